"""COPY and MOVE (RFC 9051 6.4.7, 6.4.8; UIDPLUS COPYUID, RFC 4315 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import find_mailbox, mailbox_name, message_set
from borderline.imap.commands.expunge import announce_removed
from borderline.imap.commands.store import writable
from borderline.imap.protocol import uid_set_text
from borderline.imap.state import Selected
from borderline.store import MailStore

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def copy(session: Session, state: Selected, request: Request) -> str:
    code = await _copy_messages(session, state, request)
    return f"{code}COPY completed"


async def _copy_messages(session: Session, state: Selected, request: Request) -> str:
    args = request.args
    numbers = message_set(session, state.view, args, request.by_uid)
    dest = await find_mailbox(session, state.account, mailbox_name(session, args), trycreate=True)
    args.end()
    uids = [m.uid for _, m in state.view.resolve(numbers, request.by_uid)]
    if not uids:
        return ""
    mapping = await session.stored(session.store.copy, state.view.id, uids, dest.id)
    session.server.changed(dest.id)
    if not mapping:
        return ""
    return (
        f"[COPYUID {dest.uidvalidity} {uid_set_text([a for a, _ in mapping])}"
        f" {uid_set_text([b for _, b in mapping])}] "
    )


async def move(session: Session, state: Selected, request: Request) -> str:
    """RFC 6851: copy, then expunge the originals, announcing COPYUID untagged."""
    view = writable(state)
    args = request.args
    position = args.pos
    numbers = message_set(session, view, args, request.by_uid)
    uids = [m.uid for _, m in view.resolve(numbers, request.by_uid)]
    args.pos = position
    code = await _copy_messages(session, state, request)
    if code:
        session.emit(f"* OK {code.strip()}".encode())
    if uids:
        async with session.server.flag_lock(view.id):
            removed = await session.stored(_expunge_uids, session.store, view.id, uids)
        announce_removed(session, view, removed)
    return "MOVE completed"


def _expunge_uids(store: MailStore, mailbox_id: int, uids: list[int]) -> list[int]:
    store.set_flags(mailbox_id, uids, frozenset({"\\Deleted"}), "add")
    return store.expunge(mailbox_id, uids)


COPY = Command(copy, SELECTED, announces_expunges=False)
MOVE = Command(move, SELECTED)
