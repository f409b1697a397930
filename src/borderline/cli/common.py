"""What every command shares: finding the config, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from borderline.accounts import AccountError
from borderline.cloud import Cloud
from borderline.config import Config, ConfigError, load_config
from borderline.directory import DirectoryError
from borderline.store import StoreError
from borderline.vault import KeyReleaseDenied

# Markup is off: references, names and reasons come from authorities and staff, and rich
# would read "[/]" in them as a closing tag (a crash) or "[link=...]" as a link. Styling is
# applied with Text objects only, never by putting text into a markup string. Soft wrap:
# a line is printed whole, never broken at the console width (a copied signed note, hash or
# path must stay intact); the terminal folds it for the eye.
console = Console(markup=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


def data_table(*headers: str) -> Table:
    """A table whose cells wrap onto more lines when narrow but are never cut short, so no
    two rows ever look the same because their ids were truncated."""
    grid = Table()
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid


def emphasis(*parts: str) -> Text:
    """A line whose odd-numbered parts (the names that matter) are bold."""
    return Text.assemble(*((p, "bold") if i % 2 else p for i, p in enumerate(parts)))


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="BORDERLINE_CONFIG",
        help="Path of borderline.toml.",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

DEFAULT_CONFIG = Path(os.environ.get("BORDERLINE_CONFIG", "borderline.toml"))
USER_ERRORS = (
    AccountError,
    ConfigError,
    DirectoryError,
    KeyReleaseDenied,
    StoreError,
    ValueError,
    OSError,
)


def fail(message: str) -> typer.Exit:
    """One unwrapped line, so scripts read the whole reason (errors naming a file path and
    a field run long; a config with several problems lists them all)."""
    one_line = "; ".join(message.splitlines())
    err_console.print(Text.assemble(("error:", "bold red"), " ", one_line), soft_wrap=True)
    return typer.Exit(code=1)


@contextmanager
def user_errors(*more: type[Exception]) -> Iterator[None]:
    """Turn the errors a user can fix (and `more` of a command's own) into a one-line reason
    and exit status 1."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, USER_ERRORS + more):
            raise fail(str(exc)) from exc
        raise


def load(config_path: Path) -> Config:
    with user_errors():
        return load_config(config_path)


@contextmanager
def open_cloud(config_path: Path, region: str | None = None) -> Iterator[Cloud]:
    config = load(config_path)
    with user_errors():
        cloud = Cloud(config, only=region)
        try:
            yield cloud
        finally:
            cloud.close()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_pairs(
    rows: list[tuple[str, str]], keys: tuple[str, str], headers: tuple[str, str], as_json: bool
) -> None:
    """Two-column rows as JSON objects (under `keys`) or a table (under `headers`)."""
    if as_json:
        print_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    table = data_table(*headers)
    for row in rows:
        table.add_row(*row)
    console.print(table)
