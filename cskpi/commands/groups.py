"""The `cskpi` command groups: `connectors`, `secrets` and `import`, one Typer per noun.

They look after what surrounds the pipeline (installed plugins, keyring entries, CSV data
loaded by hand) rather than run it, so they live apart from the pipeline's commands in
``cli.py``, which joins them to the app with ``add_typer``. Heavy imports stay inside the
commands so that `cskpi --help` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cskpi.commands.common import App, ConfigOption, config_or_fail, fail, installed_types

connectors_app = App(no_args_is_help=True, help="Installed connector types.")
secrets_app = App(no_args_is_help=True, help="Secrets kept in the OS keyring.")
import_app = App(no_args_is_help=True, help="Load survey answers and account data from CSV files.")

CsvFile = Annotated[Path, typer.Argument(help="CSV file with a header row.")]


@import_app.command("ratings")
def import_ratings(file: CsvFile, config: ConfigOption = None) -> None:
    """Survey answers (CSAT, NPS, CES, eSAT): kind, score, rated_at, optional scale, id,
    ticket, agent, comment. All rows or none.

    Example: cskpi import ratings nps-export.csv"""
    _import(file, config, "ratings")


@import_app.command("accounts")
def import_accounts(file: CsvFile, config: ConfigOption = None) -> None:
    """Account data: organization (id or name), mrr, created_at, churned_at. All rows or none.

    Example: cskpi import accounts accounts.csv"""
    _import(file, config, "accounts")


def _import(file: Path, config: Path | None, what: str) -> None:
    from cskpi.core import importer
    from cskpi.core.store.engine import open_engine

    cfg = config_or_fail(config)
    engine = open_engine(cfg.database)
    try:
        load = importer.import_ratings if what == "ratings" else importer.import_accounts
        result = load(engine, file, cfg.timezone)
    except importer.ImportFileError as exc:
        fail(str(exc), code=1)
    finally:
        engine.dispose()
    if result.created or result.updated:
        typer.echo(f"{file}: {result.rows:,} {what} rows, {result.created:,} new, "
                   f"{result.updated:,} updated, {result.unchanged:,} unchanged")  # fmt: skip
    else:
        typer.echo(f"{file}: unchanged; its {result.rows:,} {what} rows are stored already")


@connectors_app.command("list")
def connectors_list(config: ConfigOption = None) -> None:
    """Installed connector types, built-in and plugins, with their config keys.

    Example: cskpi connectors list"""
    from cskpi.commands.console import connector_types_table, out

    out.print(connector_types_table(installed_types()))


@secrets_app.command("set")
def secrets_set(name: str, config: ConfigOption = None) -> None:
    """Store a secret in the OS keyring (prompted, never echoed); use it as keyring:NAME.

    Example: cskpi secrets set acme-zendesk"""
    from cskpi.core.config.secrets import SecretError, check_backend, set_secret

    try:
        check_backend()
        value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
        set_secret(name, value)
    except SecretError as exc:
        fail(str(exc))
    typer.echo(f'stored {name}; refer to it as "keyring:{name}"')


@secrets_app.command("delete")
def secrets_delete(name: str, config: ConfigOption = None) -> None:
    """Remove a secret from the OS keyring.

    Example: cskpi secrets delete acme-zendesk"""
    from cskpi.core.config.secrets import SecretError, delete_secret

    try:
        delete_secret(name)
    except SecretError as exc:
        fail(str(exc))
    typer.echo(f"deleted {name}")


@secrets_app.command("list")
def secrets_list(config: ConfigOption = None) -> None:
    """Names of the secrets cskpi stored (never their values).

    Example: cskpi secrets list"""
    from cskpi.core.config.secrets import SecretError, list_secrets

    try:
        names = list_secrets()
    except SecretError as exc:
        fail(str(exc))
    typer.echo("\n".join(names) if names else "no secrets stored")
