"""APPEND (RFC 9051 6.3.12, UIDPLUS APPENDUID): the message is encrypted inside the vault,
so appending releases no key."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from borderline.imap.commands.base import LOGGED_IN, Command, Request
from borderline.imap.commands.common import find_mailbox, mailbox_name, parse_flags
from borderline.imap.protocol import Args, Atom, ParseError, parse_date_time
from borderline.imap.replies import no
from borderline.imap.state import LoggedIn

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def append(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = mailbox_name(session, args)
    flags: frozenset[str] = frozenset()
    internal_date = time.time()
    if isinstance(args.peek(), list):
        flags = parse_flags(args.list("flag list"))
    if isinstance(args.peek(), bytes) and args.more() and args.pos + 1 < len(args.tokens):
        internal_date = parse_date_time(args.astring("date-time"))
    content = args.next("message literal")
    if isinstance(content, Atom) and content.upper() == "UTF8":
        content = _utf8_data(args)
    if not isinstance(content, bytes):
        raise ParseError("APPEND: the message must be a literal")
    args.end()
    if not content:
        raise no("APPEND: empty message")
    address = state.account.address
    box = await find_mailbox(session, state.account, name, trycreate=True)
    planner, store = session.region.planner, session.store

    def deliver() -> int:
        delivery = planner.local_delivery(
            address, content, internal_date, mailbox=name, flags=flags
        )
        return store.deliver([delivery])[0][1]

    uid = await session.stored(deliver)
    session.server.changed(box.id)
    return f"[APPENDUID {box.uidvalidity} {uid}] APPEND completed"


def _utf8_data(args: Args) -> bytes:
    """RFC 6855 4: `UTF8 (~{n}message)`, a message with UTF-8 headers (Thunderbird saves sent
    mail this way once UTF8=ACCEPT is advertised)."""
    inner = args.next("UTF8 message")
    if not (isinstance(inner, list) and len(inner) == 1 and isinstance(inner[0], bytes)):
        raise ParseError("APPEND: expected UTF8 (~{size}<message>)")
    return inner[0]


COMMANDS: dict[str, Command[LoggedIn]] = {"APPEND": Command(append, LOGGED_IN)}
