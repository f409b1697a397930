"""Selecting a mailbox and leaving it (RFC 9051 6.3.2, 6.3.3, 6.4.2, RFC 3691): SELECT,
EXAMINE, CLOSE, UNSELECT. An IMAP4rev1 session gets RECENT and the UNSEEN code, an
IMAP4rev2 one the mailbox's LIST response instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

from borderline.imap.commands.base import LOGGED_IN, SELECTED, Command, Request
from borderline.imap.commands.common import encode_name, mailbox_name
from borderline.imap.commands.qresync import resync, select_parameters
from borderline.imap.replies import no
from borderline.imap.state import LoggedIn, Selected
from borderline.imap.view import MailboxView
from borderline.store import MailboxNotFound

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def select(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    readonly = request.name == "EXAMINE"
    name = mailbox_name(session, args)
    wanted = None
    if isinstance(args.peek(), list):
        wanted = select_parameters(session, args.list("select parameters"))
    args.end()
    account = state.account
    if isinstance(state, Selected):
        session.deselect()
        session.emit(b"* OK [CLOSED] previous mailbox closed")
    epoch = session.server.mailbox_epoch(account.address)  # before: a delete meanwhile counts
    # One store call: the mailbox, and its messages unless this process has them already.
    try:
        view = await session.stored(
            MailboxView.open,
            session.store,
            session.server.snapshots,
            account.address,
            name,
            readonly,
            epoch,
            recent=not session.imap4rev2,
        )
    except MailboxNotFound:
        raise no(f"[NONEXISTENT] no mailbox {name!r}") from None
    for line in view.flags_lines():
        session.emit(line)
    session.emit(b"* %d EXISTS" % view.exists)
    if session.imap4rev2:  # RFC 9051 6.3.2: LIST instead of RECENT and UNSEEN
        session.emit(b'* LIST () "/" ' + encode_name(session, view.mailbox.name))
    else:
        session.emit(b"* %d RECENT" % len(view.recent))
        first_unseen = view.first_unseen()
        if first_unseen is not None:
            session.emit(b"* OK [UNSEEN %d] first unseen message" % first_unseen)
    session.emit(b"* OK [UIDVALIDITY %d] UIDs valid" % view.mailbox.uidvalidity)
    session.emit(b"* OK [UIDNEXT %d] predicted next UID" % view.uidnext)
    session.emit(b"* OK [HIGHESTMODSEQ %d] highest modseq" % view.modseq)
    session.select(account, view)
    if wanted is not None:
        await resync(session, view, wanted)
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return f"[{mode}] {request.name} completed"


async def close(session: Session, state: Selected, request: Request) -> str:
    request.args.end()
    view = state.view
    if not view.readonly:
        await session.stored(session.store.expunge, view.id)
        session.server.changed(view.id)
    session.deselect()
    return "CLOSE completed"


async def unselect(session: Session, state: Selected, request: Request) -> str:
    request.args.end()
    session.deselect()
    return "UNSELECT completed"


COMMANDS: dict[str, Command[LoggedIn]] = {
    # The view is as fresh as a sync would make it: changes since are reported next time.
    "SELECT": Command(select, LOGGED_IN, sync_after=False),
    "EXAMINE": Command(select, LOGGED_IN, sync_after=False),
}
SELECTED_COMMANDS: dict[str, Command[Selected]] = {
    "CLOSE": Command(close, SELECTED),
    "UNSELECT": Command(unselect, SELECTED),
}
