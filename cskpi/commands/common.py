"""What every `cskpi` command module shares: the --config and --verbose options, `fail`, and
loading the config and the installed connector types.

It is apart from ``cli.py`` so that the command groups in ``groups.py`` can use it while
``cli.py`` imports those groups to join them to the app, without an import cycle. Like the
commands, it imports nothing heavy at module level, so `cskpi --help` answers at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

try:
    from typer._click import exceptions as click_errors  # newer typer carries its own click
except ImportError:  # pragma: no cover - typer on the separate click package
    from click import exceptions as click_errors  # type: ignore[no-redef]

from cskpi.core.store.errors import StoreError

if TYPE_CHECKING:
    from cskpi.connectors.base import ConnectorFactory
    from cskpi.core.config.file import Config

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file, before or after the command. Default: $CSKPI_CONFIG, then ./cskpi.toml.",
        show_default=False,
        metavar="PATH",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


def _readable_placeholders(params: Sequence[Any]) -> None:
    """``--dry-run`` rather than ``--dry-run <bool>``, ``--format FORMAT`` rather than
    ``--format <str>``, ``NAME`` rather than ``name <str>``."""
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = "" if param.is_flag else longest.upper()
        elif isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "").upper()
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]


class Command(TyperCommand):
    """A cskpi command: readable placeholders in its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _readable_placeholders(params)
        return params


class Group(TyperGroup):
    """A cskpi command group. At the top, it renders every usage error as one ``error:`` line
    with exit 2, as ``fail`` does, instead of typer's boxed panel."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _readable_placeholders(params)
        return params

    def invoke(self, ctx: Any) -> Any:  # a click.Context (newer typers vendor their own click)
        """A database that cannot be used, met by any command, answers with its one line and
        exit status (SPEC §1), not a traceback."""
        try:
            return super().invoke(ctx)
        except StoreError as exc:
            fail(str(exc), exc.code)

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        if extra.pop("standalone_mode", True) is False:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # typer has printed the help
            sys.exit(exc.exit_code)
        except click_errors.UsageError as exc:
            hint = f"; see `{exc.ctx.command_path} --help`" if exc.ctx else ""
            typer.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> str:
    return " ".join(message.split()).rstrip(".")


class App(typer.Typer):
    """``typer.Typer`` whose commands and groups are :class:`Command` and :class:`Group`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(cls=Group, **options)

    def command(
        self, *args: Any, **options: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        return super().command(*args, cls=Command, **options)


def config_everywhere(group: Any, path: Path) -> dict[str, Any]:
    """A click ``default_map`` giving ``--config PATH`` to every command under ``group``."""
    return {
        name: config_everywhere(sub, path) if hasattr(sub, "commands") else {"config": path}
        for name, sub in group.commands.items()
    }


def fail(message: str, code: int = 2) -> NoReturn:
    # Plain echo: one unwrapped line, and no markup parsing of "[connectors.x]".
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
        for line in exc.lines[:-1]:  # every problem at once, one `error:` line each
            typer.echo(f"error: {line}", err=True)
        fail(exc.lines[-1])


def reading_config(path: Path | None, readers: int = 1) -> Config:
    """``config_or_fail`` for a command that reads KPIs: the SQLite readers' processes
    start at once, their start overlapping this process's imports (columns.start_reader);
    ``readers``: how many of its threads read at once."""
    from cskpi.core.store.reads.columns import start_reader

    config = config_or_fail(path)
    start_reader(config.database, readers)
    return config


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
