"""STORE (RFC 9051 6.4.6; CONDSTORE UNCHANGEDSINCE, RFC 7162 3.1.3)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from borderline.imap.commands.base import SELECTED, Command, Request
from borderline.imap.commands.common import message_set, modifier, parse_flags
from borderline.imap.protocol import ParseError, flag_list, uid_set_text
from borderline.imap.replies import no
from borderline.imap.state import Selected
from borderline.imap.view import MailboxView

if TYPE_CHECKING:
    from borderline.imap.session import Session


def writable(state: Selected) -> MailboxView:
    if state.view.readonly:
        raise no("[READ-ONLY] the mailbox was opened with EXAMINE")
    return state.view


async def store(session: Session, state: Selected, request: Request) -> str:
    args, by_uid = request.args, request.by_uid
    view = writable(state)
    numbers = message_set(session, view, args, by_uid)
    unchanged_since = modifier(args, "UNCHANGEDSINCE")
    if unchanged_since is not None:
        session.enable_condstore()
    action = args.atom("FLAGS, +FLAGS or -FLAGS").upper()
    match = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", action)
    if match is None:
        raise ParseError(f"STORE: unknown item {action}")
    rest = args.tokens[args.pos :]
    args.pos = len(args.tokens)
    tokens = rest[0] if len(rest) == 1 and isinstance(rest[0], list) else rest
    flags = parse_flags(tokens)
    mode = {"": "set", "+": "add", "-": "remove"}[match[1]]
    messages = view.resolve(numbers, by_uid)
    modified: list[int] = []
    db = session.store
    async with session.server.flag_lock(view.id):
        if unchanged_since is not None:
            # Checked against the store, not this session's view, under the lock every
            # flag writer of this mailbox takes: no write can slip in between.
            stored = await session.stored(db.messages, view.id)
            current = {m.uid: m.modseq for m in stored}
            late = {m.uid for _, m in messages if current.get(m.uid, 0) > unchanged_since}
            modified = [m.uid if by_uid else seq for seq, m in messages if m.uid in late]
            messages = [(seq, m) for seq, m in messages if m.uid not in late]
        uids = [m.uid for _, m in messages]
        changed = await session.stored(db.set_flags, view.id, uids, flags, mode)
    for line in view.update(changed):
        session.emit(line)
    if changed:
        session.server.changed(view.id)
    if not match[2] or (session.condstore and changed):
        touched = {m.uid for m in changed}
        for seq, message in messages:
            info = view.info.get(message.uid)
            if info is None or (match[2] and info.uid not in touched):
                continue
            # With QRESYNC every FETCH carries its UID (RFC 7162 3.2.4).
            items = [b"UID %d" % info.uid] if by_uid or session.qresync else []
            if not match[2]:  # .SILENT with CONDSTORE: only the new MODSEQ (RFC 7162 3.2)
                items.append(b"FLAGS " + flag_list(info.flags))
            if session.condstore:
                items.append(b"MODSEQ (%d)" % info.modseq)
            session.emit(b"* %d FETCH (%s)" % (seq, b" ".join(items)))
    if modified:
        return f"[MODIFIED {uid_set_text(sorted(modified))}] STORE completed"
    return "STORE completed"


COMMAND = Command(store, SELECTED, announces_expunges=False)
