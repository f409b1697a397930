"""`borderline alias add|list|remove`: more addresses for an account, homed with it."""

from __future__ import annotations

from typing import Annotated

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    emphasis,
    open_cloud,
    print_pairs,
    user_errors,
)

app = typer.Typer(help="Aliases: addresses whose mail goes to an account, in its home region.")


@app.command("add")
def add(
    alias: Annotated[str, typer.Argument(help="The new address.")],
    account: Annotated[str, typer.Argument(help="The account its mail goes to.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Deliver mail for ALIAS to ACCOUNT; ACCOUNT may also send as ALIAS."""
    with open_cloud(config) as cloud, user_errors():
        added = cloud.add_alias(alias, account)
    console.print(emphasis("added ", added, " for ", account.lower()))


@app.command("list")
def list_aliases(
    account: Annotated[str | None, typer.Argument(help="Only this account's.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """List aliases and the accounts they deliver to (from the directory: no content)."""
    with open_cloud(config) as cloud:
        rows = cloud.directory.aliases(account)
    print_pairs(rows, ("alias", "account"), ("alias", "account"), as_json)


@app.command("remove")
def remove(
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Stop delivering mail for ALIAS (mail already delivered stays)."""
    with open_cloud(config) as cloud, user_errors():
        cloud.remove_alias(alias)
    console.print(emphasis("removed ", alias.lower(), ""))
