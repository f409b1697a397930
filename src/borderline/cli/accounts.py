"""`borderline account add|list|show|passwd|delete`."""

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
    print_pairs,
    user_errors,
)
from borderline.cli.legal_client import served

app = typer.Typer(
    help="Accounts: add them to a home region, list and show them, change passwords, delete."
)

PasswordOption = Annotated[
    str | None,
    typer.Option(
        "--password",
        envvar="BORDERLINE_PASSWORD",
        help="Password (prompted for if omitted).",
    ),
]


def _password(address: str, given: str | None) -> str:
    if given is not None:
        return given
    password = getpass.getpass(f"Password for {address}: ")
    if password != getpass.getpass("Again: "):
        raise fail("the passwords differ")
    return password


@app.command("add")
def add(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    region: Annotated[str, typer.Option("--region", "-r", help="Home region id.")],
    password: PasswordOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Home a new account in REGION: its key, mailboxes and mail stay there."""
    password = _password(address, password)
    with open_cloud(config) as cloud, user_errors():
        added = cloud.add_account(address, region, password)
    console.print(emphasis("added ", added, ", homed in region ", region))


@app.command("passwd")
def passwd(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    password: PasswordOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Give an account a new password (kept in its home region only)."""
    password = _password(address, password)
    with open_cloud(config) as cloud, user_errors():
        cloud.set_password(address, password)
    console.print(emphasis("new password for ", address.lower(), ""))


@app.command("delete")
def delete(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Delete an account for good: its mail, its aliases, and its data key, so no copy of
    its ciphertext can be read again. Refused while a preservation hold covers it. The
    deletion is on the region's transparency log, naming no one."""
    if not yes and not typer.confirm(f"Delete {address} and all its mail for good?"):
        raise fail("not deleted")
    with open_cloud(config) as cloud, user_errors():
        home = cloud.directory.home(address)
        if home is not None and served(cloud.config, home):  # the server owns its log
            index = cloud.hand_off_deletion(address, home)
        else:
            index = cloud.delete_account(address)
    console.print(emphasis("deleted ", address.lower(), f"; log entry {index}"))


@app.command("list")
def list_accounts(
    region: Annotated[str | None, typer.Option("--region", "-r", help="Only this region.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """List accounts and their home regions (from the directory: no content)."""
    with open_cloud(config) as cloud:
        rows = cloud.directory.accounts(region)
    print_pairs(rows, ("address", "region"), ("address", "home region"), as_json)


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
