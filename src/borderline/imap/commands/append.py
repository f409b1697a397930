"""APPEND (RFC 9051 6.3.12, UIDPLUS APPENDUID, MULTIAPPEND RFC 3502): the message is
encrypted inside the vault, so appending releases no key."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from borderline.imap.commands.base import LOGGED_IN, Command, Request
from borderline.imap.commands.common import find_mailbox, mailbox_name, parse_flags
from borderline.imap.mime import binary_as_base64
from borderline.imap.protocol import Args, Atom, Literal, ParseError, parse_date_time, uid_set_text
from borderline.imap.replies import no
from borderline.imap.state import LoggedIn

if TYPE_CHECKING:
    from borderline.imap.session import Session

MAX_MESSAGES = 1000


async def append(session: Session, state: LoggedIn, request: Request) -> str:
    """One message or, with MULTIAPPEND (RFC 3502), several: stored in one transaction, so
    all or none. Their literals together are bounded by APPENDLIMIT (Session.read_command),
    their number by MAX_MESSAGES."""
    args = request.args
    name = mailbox_name(session, args)
    messages: list[tuple[frozenset[str], float, bytes]] = []
    while args.more() or not messages:
        if len(messages) >= MAX_MESSAGES:
            raise ParseError(f"APPEND: more than {MAX_MESSAGES} messages in one command")
        messages.append(_message(args))
    if any(not content for _, _, content in messages):
        raise no("APPEND: empty message")
    for index, (flags, date, content) in enumerate(messages):
        if b"\0" in content or b"binary" in content.lower():  # a quick look, then the parse
            messages[index] = (flags, date, await session.work(binary_as_base64, content))
    address = state.account.address
    box = await find_mailbox(session, state.account, name, trycreate=True)
    planner, store = session.region.planner, session.store

    def deliver() -> list[int]:
        deliveries = [
            planner.local_delivery(address, content, date, mailbox=name, flags=flags)
            for flags, date, content in messages
        ]
        return [placed.uid for placed in store.deliver(deliveries)]

    uids = await session.stored(deliver)
    session.server.changed(box.id)
    return f"[APPENDUID {box.uidvalidity} {uid_set_text(uids)}] APPEND completed"


def _message(args: Args) -> tuple[frozenset[str], float, bytes]:
    """One message's [flag list] [date-time] literal."""
    flags: frozenset[str] = frozenset()
    internal_date = time.time()
    if isinstance(args.peek(), list):
        flags = parse_flags(args.list("flag list"))
    date = args.peek()
    if isinstance(date, bytes) and not isinstance(date, Literal):
        internal_date = parse_date_time(args.astring("date-time"))
    content = args.next("message literal")
    if isinstance(content, Atom) and content.upper() == "UTF8":
        content = _utf8_data(args)
    if not isinstance(content, bytes):
        raise ParseError("APPEND: the message must be a literal")
    return flags, internal_date, content


def _utf8_data(args: Args) -> bytes:
    """RFC 6855 4: `UTF8 (~{n}message)`, a message with UTF-8 headers (Thunderbird saves sent
    mail this way once UTF8=ACCEPT is advertised)."""
    inner = args.next("UTF8 message")
    if not (isinstance(inner, list) and len(inner) == 1 and isinstance(inner[0], bytes)):
        raise ParseError("APPEND: expected UTF8 (~{size}<message>)")
    return inner[0]


COMMANDS: dict[str, Command[LoggedIn]] = {"APPEND": Command(append, LOGGED_IN)}
