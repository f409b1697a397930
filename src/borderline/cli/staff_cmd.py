"""`borderline staff add|list|disable|passwd|token`: the people of the legal desk.

Staff records are not on the transparency log, so these commands work whether or not
`borderline serve` runs. Once a custodian has an admin, adding, disabling and resetting its
people needs an admin's token (the first account of a custodian is the bootstrap).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    fail,
    load,
    print_json,
    user_errors,
)
from borderline.staff import (
    Enrollment,
    PermissionDenied,
    Role,
    StaffError,
    StaffMember,
    StaffRoster,
    parse_roles,
)

app = typer.Typer(help="Staff of the legal desk: accounts, roles, logins.", no_args_is_help=True)

PASSWORD_ENV = "BORDERLINE_STAFF_PASSWORD"
NEW_PASSWORD_ENV = "BORDERLINE_NEW_PASSWORD"
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="BORDERLINE_TOKEN",
        help="Your staff token (`borderline staff token`); or set BORDERLINE_TOKEN.",
        show_default=False,
    ),
]
CodeOption = Annotated[
    str | None, typer.Option("--code", help="The code your authenticator app shows now.")
]


@contextmanager
def open_roster(config_path: Path) -> Iterator[StaffRoster]:
    config = load(config_path)
    with user_errors(StaffError):
        roster = StaffRoster.of(config)
        try:
            yield roster
        finally:
            roster.close()


def secret(env: str, prompt: str, confirm: bool = False) -> str:
    """A password from the environment (scripts) or typed without echo."""
    value = os.environ.get(env)
    if value is not None:
        return value
    value = getpass.getpass(prompt)
    if confirm and value != getpass.getpass("Again: "):
        raise fail("the passwords differ")
    return value


def _admin_check(roster: StaffRoster, custodian: str, token: str | None) -> int | None:
    """The admin allowing a change to a custodian's staff (None while it has no admin)."""
    if not roster.has_admin(custodian):
        return None
    if token is None:
        raise PermissionDenied(
            f"{custodian} has an admin: run this with an admin's --token (BORDERLINE_TOKEN)"
        )
    admin = roster.token_login(token)
    admin.require("manage staff", Role.ADMIN)
    if admin.member.custodian != custodian:
        raise PermissionDenied(f"{admin.member.label} is not an admin of {custodian}")
    return admin.id


def _print_enrollment(enrolled: Enrollment, as_json: bool, verb: str) -> None:
    member = enrolled.member
    if as_json:
        print_json(
            {
                **member.to_json(),
                "totp_secret": enrolled.totp_secret,
                "totp_uri": enrolled.totp_uri,
            }
        )
        return
    console.print(
        f"{verb} staff {member.id}: {member.name} ({member.role_words()}), employed by"
        f" {member.custodian}; key held by {member.key_region}",
        highlight=False,
    )
    console.print(
        "Give the person this authenticator secret once (it is not shown again):",
        highlight=False,
    )
    console.print(f"  secret: {enrolled.totp_secret}", highlight=False)
    console.print(f"  {enrolled.totp_uri}", highlight=False)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The person's name as records show it.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="Comma-separated: intake, legal-reviewer, security-reviewer, auditor, admin.",
        ),
    ],
    region: Annotated[
        str,
        typer.Option(
            "--region",
            "-r",
            help="The region that holds the person's key: one run by their employer.",
        ),
    ],
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Create a staff account: a password (BORDERLINE_STAFF_PASSWORD or prompted), a TOTP
    secret to enroll in an authenticator app, and an Ed25519 signing key held by REGION."""
    with open_roster(config) as roster, user_errors(StaffError):
        roles = parse_roles(role)
        custodian = roster.key_regions.get(region)
        by = _admin_check(roster, custodian, token) if custodian else None
        password = secret(PASSWORD_ENV, f"Password for {name}: ", confirm=True)
        enrolled = roster.add(name, roles, region, password, created_by=by)
    _print_enrollment(enrolled, as_json, "added")


def _row(member: StaffMember) -> dict[str, object]:
    return member.to_json()


@app.command("list")
def list_staff(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Every staff account, with roles, employer and whether it is enabled."""
    with open_roster(config) as roster:
        members = roster.members()
    if as_json:
        print_json([_row(m) for m in members])
        return
    table = data_table("id", "name", "roles", "custodian", "key region", "status")
    for m in members:
        status = "enabled" if m.active else f"disabled {m.disabled_at:%Y-%m-%d}"
        table.add_row(str(m.id), m.name, m.role_words(), m.custodian, m.key_region, status)
    console.print(table)


@app.command("disable")
def disable(
    staff_id: Annotated[int, typer.Argument(help="The account id (see `staff list`).")],
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The person can no longer log in and their tokens stop working; what they signed
    still verifies."""
    with open_roster(config) as roster, user_errors(StaffError):
        member = roster.get(staff_id)
        by = _admin_check(roster, member.custodian, token)
        member = roster.disable(staff_id, by)
    if as_json:
        print_json(_row(member))
    else:
        console.print(f"disabled {member.label}", highlight=False)


@app.command("passwd")
def passwd(
    staff_id: Annotated[int, typer.Argument(help="The account id (see `staff list`).")],
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="The password is lost: an admin sets a new one; the person gets a new key and"
            " a new authenticator secret.",
        ),
    ] = False,
    code: CodeOption = None,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Change a password: yours with your current password and code, or (--reset) anyone's
    of your custodian as its admin."""
    with open_roster(config) as roster, user_errors(StaffError):
        member = roster.get(staff_id)
        if reset:
            by = _admin_check(roster, member.custodian, token)
            new = secret(NEW_PASSWORD_ENV, f"New password for {member.name}: ", confirm=True)
            _print_enrollment(roster.reset(staff_id, new, by), as_json, "reset")
            return
        current = secret(PASSWORD_ENV, f"Current password of {member.name}: ")
        signer = roster.login(str(staff_id), current, code or typer.prompt("Code"))
        roster.change_password(signer, secret(NEW_PASSWORD_ENV, "New password: ", confirm=True))
    console.print(f"password changed for {member.label}", highlight=False)


@app.command("token")
def token(
    who: Annotated[str, typer.Argument(help="Your staff id or name.")],
    code: CodeOption = None,
    days: Annotated[float, typer.Option(help="How long it works (at most 90 days).")] = 1,
    label: Annotated[str, typer.Option(help="What it is for (recorded).")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Log in (password from BORDERLINE_STAFF_PASSWORD or prompted, and your code) and print
    a bearer token for the legal commands and the HTTP API: export BORDERLINE_TOKEN=..."""
    with open_roster(config) as roster, user_errors(StaffError):
        password = secret(PASSWORD_ENV, "Password: ")
        signer = roster.login(who, password, code or typer.prompt("Code"))
        issued = roster.create_token(signer, days, label)
    typer.echo(issued)
