"""What every `cskpi` command module shares: the --config and --verbose options, `fail`, and
loading the config and the installed connector types.

It is apart from ``cli.py`` so that the command groups in ``groups.py`` can use it while
``cli.py`` imports those groups to join them to the app, without an import cycle. Like the
commands, it imports nothing heavy at module level, so `cskpi --help` answers at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from cskpi.core.store.errors import StoreError

if TYPE_CHECKING:
    from cskpi.connectors.base import ConnectorFactory
    from cskpi.core.config.file import Config

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file. Default: $CSKPI_CONFIG, then ./cskpi.toml.",
        show_default=False,
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def fail(message: str, code: int = 2) -> NoReturn:
    # Plain echo: one unwrapped line, and no markup parsing of "[connectors.x]".
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class CskpiGroup(TyperGroup):
    """The app's command group: a database that cannot be used, met by any command, answers
    with its one line and exit status (SPEC §1), not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # a click.Context (newer typers vendor their own click)
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            fail(str(exc), exc.code)


def installed_types() -> dict[str, ConnectorFactory]:
    from cskpi.connectors.registry import installed

    return installed()


def config_or_fail(path: Path | None, verbose: bool = False) -> Config:
    """The config at ``path`` (or found the usual way); exit 2 with its error if invalid."""
    from cskpi.commands.console import setup_logging
    from cskpi.core.config.file import ConfigError, find_config_path
    from cskpi.core.config.file import load_config as load

    setup_logging(verbose)
    try:
        return load(find_config_path(path), installed_types())
    except ConfigError as exc:
        fail(str(exc))


@contextlib.contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM, so a sync stops after the page it is
    storing (its run is recorded as interrupted); a second signal stops at once."""
    stop = threading.Event()

    def ask(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo("stopping after the page being stored (again to stop at once)", err=True)

    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
