"""EXPUNGE and UID EXPUNGE (RFC 9051 6.4.3, RFC 4315 2.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import message_set
from borderline.imap.commands.store import writable
from borderline.imap.state import Selected
from borderline.imap.view import MailboxView

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def expunge(session: Session, state: Selected, request: Request) -> str:
    args = request.args
    uids: list[int] | None = None
    if request.by_uid:
        numbers = message_set(session, state.view, args, by_uid=True)
        uids = [m.uid for _, m in state.view.resolve(numbers, by_uid=True)]
    args.end()
    view = writable(state)
    if uids == []:
        return "EXPUNGE completed"
    removed = await session.stored(session.store.expunge, view.id, uids)
    announce_removed(session, view, removed)
    return "EXPUNGE completed"


def announce_removed(session: Session, view: MailboxView, uids: list[int]) -> None:
    """EXPUNGE responses for what this session removed, and a wake-up for the others."""
    for line in view.remove(uids, session.qresync):
        session.emit(line)
    if uids:
        session.server.changed(view.id)


COMMAND = Command(expunge, SELECTED)
