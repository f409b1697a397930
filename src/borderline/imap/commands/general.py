"""Commands of any state (RFC 9051 6.1): CAPABILITY, NOOP, LOGOUT, ID; and CHECK."""

from __future__ import annotations

from typing import TYPE_CHECKING

from borderline.imap.commands.base import ANY, SELECTED, Command, Request
from borderline.imap.protocol import Atom, ParseError
from borderline.imap.state import Selected, State

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def capability(session: Session, state: State, request: Request) -> str:
    request.args.end()
    session.emit(b"* CAPABILITY " + session.capabilities().encode())
    return "CAPABILITY completed"


async def noop(session: Session, state: State, request: Request) -> str:
    request.args.end()
    return f"{request.name} completed"


async def logout(session: Session, state: State, request: Request) -> str:
    request.args.end()
    session.emit(b"* BYE Borderline logging out")
    session.log_out()
    return "LOGOUT completed"


async def identify(session: Session, state: State, request: Request) -> str:
    """RFC 2971."""
    args = request.args
    token = args.next("ID parameters")
    if not (isinstance(token, list) or (isinstance(token, Atom) and token.upper() == "NIL")):
        raise ParseError("ID: expected a parameter list or NIL")
    args.end()
    session.emit(b'* ID ("name" "Borderline" "vendor" "Borderline" "version" "0.1.0")')
    return "ID completed"


async def check(session: Session, state: Selected, request: Request) -> str:
    return await noop(session, state, request)


COMMANDS: dict[str, Command[State]] = {
    "CAPABILITY": Command(capability, ANY),
    "NOOP": Command(noop, ANY),
    "LOGOUT": Command(logout, ANY, sync_after=False),
    "ID": Command(identify, ANY),
}
SELECTED_COMMANDS: dict[str, Command[Selected]] = {"CHECK": Command(check, SELECTED)}
