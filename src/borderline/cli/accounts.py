"""`borderline account add|list|show`."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    fail,
    open_cloud,
    print_json,
    user_errors,
)

app = typer.Typer(help="Accounts: add them to a home region, list and show them.")


@app.command("add")
def add(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    region: Annotated[str, typer.Option("--region", "-r", help="Home region id.")],
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            envvar="BORDERLINE_PASSWORD",
            help="Password (prompted for if omitted).",
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Home a new account in REGION: its key, mailboxes and mail stay there."""
    if password is None:
        password = getpass.getpass(f"Password for {address}: ")
        if password != getpass.getpass("Again: "):
            raise fail("the passwords differ")
    with open_cloud(config) as cloud, user_errors():
        added = cloud.add_account(address, region, password)
    console.print(emphasis("added ", added, ", homed in region ", region))


@app.command("list")
def list_accounts(
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """List accounts and their home regions (from the directory: no content)."""
    with open_cloud(config) as cloud:
        rows = cloud.directory.accounts(region)
    if as_json:
        print_json([{"address": a, "region": r} for a, r in rows])
        return
    table = data_table("address", "home region")
    for address, home in rows:
        table.add_row(address, home)
    console.print(table)


@app.command("show")
def show(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Show where an account lives and its mailboxes (counts only, never content)."""
    with open_cloud(config) as cloud:
        home = cloud.home_region(address)
        if home is None:
            raise fail(f"no account {address}")
        mailboxes = home.store.mailboxes(address)
        info = {
            "address": address.lower(),
            "region": home.id,
            "location": home.section.location,
            "custodian": home.custodian.name,
            "mailboxes": [
                {
                    "name": m.name,
                    "special_use": m.special_use,
                    "messages": m.messages,
                    "unseen": m.unseen,
                    "uidvalidity": m.uidvalidity,
                    "uidnext": m.uidnext,
                    "highestmodseq": m.highestmodseq,
                }
                for m in mailboxes
            ],
        }
    if as_json:
        print_json(info)
        return
    console.print(
        emphasis(
            "",
            str(info["address"]),
            " homed in ",
            home.id,
            f" ({home.section.location}), keys held by {home.custodian.name}",
        )
    )
    table = data_table("mailbox", "special use", "messages", "unseen", "uidvalidity", "uidnext")
    for m in mailboxes:
        table.add_row(
            m.name,
            m.special_use or "",
            str(m.messages),
            str(m.unseen),
            str(m.uidvalidity),
            str(m.uidnext),
        )
    console.print(table)
