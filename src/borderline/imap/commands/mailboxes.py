"""Commands on the account and its mailboxes (RFC 9051 6.3): ENABLE, NAMESPACE, LIST, LSUB,
STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from borderline.imap.commands.base import LOGGED_IN, Command, Request
from borderline.imap.commands.common import (
    encode_name,
    find_mailbox,
    mailbox_name,
    mailbox_names,
    new_mailbox_name,
    one_or_list,
)
from borderline.imap.protocol import ParseError, as_text, decode_mailbox
from borderline.imap.replies import no
from borderline.imap.state import Account, LoggedIn, Selected
from borderline.store import MailboxInfo, MailboxNotFound, MailStore, MessageInfo

if TYPE_CHECKING:
    from borderline.imap.session import Session


async def enable(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    enabled = []
    while args.more():
        capability = args.atom("capability").upper()
        if capability == "UTF8=ACCEPT":
            session.utf8 = True
            enabled.append(capability)
        elif capability == "CONDSTORE":
            session.condstore = True
            enabled.append(capability)
    session.emit(("* ENABLED " + " ".join(enabled)).rstrip().encode())
    return "ENABLE completed"


async def namespace(session: Session, state: LoggedIn, request: Request) -> str:
    request.args.end()
    session.emit(b'* NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"


async def list_mailboxes(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    selection: set[str] = set()
    if isinstance(args.peek(), list):
        selection = {as_text(t, "LIST: bad option").upper() for t in args.list("options")}
    reference = args.astring("reference name")
    patterns = [as_text(t, "LIST: bad pattern") for t in one_or_list(args.next("pattern"))]
    returns: set[str] = set()
    if args.more():
        if args.atom("RETURN").upper() != "RETURN":
            raise ParseError("LIST: expected RETURN")
        returns = {as_text(t, "LIST: bad option").upper() for t in args.list("options")}
    args.end()
    await _list(session, state.account, "LIST", reference, patterns, selection, returns)
    return "LIST completed"


async def lsub(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    reference = args.astring("reference name")
    pattern = args.astring("pattern")
    args.end()
    await _list(session, state.account, "LSUB", reference, [pattern], {"SUBSCRIBED"}, set())
    return "LSUB completed"


async def _list(
    session: Session,
    account: Account,
    kind: str,
    reference: str,
    patterns: list[str],
    selection: set[str],
    returns: set[str],
) -> None:
    if patterns == [""]:
        session.emit(f'* {kind} (\\Noselect) "/" ""'.encode())
        return
    regexes = []
    for pattern in patterns:
        full = reference + pattern
        if not session.utf8:
            # A pattern that is not modified UTF-7 is matched as it is (it matches nothing).
            with contextlib.suppress(ParseError):
                full = decode_mailbox(full)
        if full[:5].upper() == "INBOX":  # INBOX is case-insensitive (RFC 3501 5.1)
            full = "INBOX" + full[5:]
        body = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
        regexes.append(re.compile(f"^{body}$", re.DOTALL))
    boxes = await session.stored(session.store.mailboxes, account.address)
    names = {box.name for box in boxes}
    for box in boxes:
        if not any(r.match(box.name) for r in regexes):
            continue
        if "SUBSCRIBED" in selection and not box.subscribed:
            continue
        if "SPECIAL-USE" in selection and not box.special_use:
            continue
        children = any(n.startswith(box.name + "/") for n in names)
        attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
        if box.special_use and kind == "LIST":
            attributes.append(box.special_use)
        if box.subscribed and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection):
            attributes.append("\\Subscribed")
        session.emit(
            f'* {kind} ({" ".join(attributes)}) "/" '.encode() + encode_name(session, box.name)
        )
    if kind == "LSUB":
        for parent in _unsubscribed_parents(boxes, regexes):
            session.emit(b'* LSUB (\\Noselect) "/" ' + encode_name(session, parent))


def _unsubscribed_parents(boxes: list[MailboxInfo], regexes: list[re.Pattern[str]]) -> list[str]:
    """RFC 3501 6.3.9: LSUB with "%" returns `foo` as \\Noselect when `foo/bar` is
    subscribed but `foo` is not, and `foo/bar` itself does not match."""
    subscribed = {box.name for box in boxes if box.subscribed}
    parents = set()
    for name in subscribed:
        if any(r.match(name) for r in regexes):
            continue
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in subscribed and any(r.match(parent) for r in regexes):
                parents.add(parent)
    return sorted(parents)


async def status(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = mailbox_name(session, args)
    wanted = [as_text(t, "STATUS: bad item").upper() for t in args.list("status items")]
    args.end()
    box = await find_mailbox(session, state.account, name)
    messages: list[MessageInfo] | None = None
    values = []
    for item in wanted:
        if item == "MESSAGES":
            value = box.messages
        elif item == "UIDNEXT":
            value = box.uidnext
        elif item == "UIDVALIDITY":
            value = box.uidvalidity
        elif item == "UNSEEN":
            value = box.unseen
        elif item == "RECENT":
            value = box.recent
        elif item == "HIGHESTMODSEQ":
            session.condstore = True
            value = box.highestmodseq
        elif item in ("SIZE", "DELETED"):
            if messages is None:
                messages = await session.stored(session.store.messages, box.id)
            if item == "SIZE":
                value = sum(m.size for m in messages)
            else:
                value = sum(1 for m in messages if "\\Deleted" in m.flags)
        else:
            raise ParseError(f"STATUS: unknown item {item}")
        values.append(f"{item} {value}")
    session.emit(b"* STATUS " + encode_name(session, name) + f" ({' '.join(values)})".encode())
    return "STATUS completed"


async def create(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = new_mailbox_name(session, args)
    args.end()
    if name == "INBOX":
        raise no("[ALREADYEXISTS] INBOX always exists")
    existing = await mailbox_names(session, state.account)
    if name in existing:
        raise no(f"[ALREADYEXISTS] mailbox {name!r} already exists")
    await session.stored(_create_with_parents, session.store, state.account, name, existing)
    return "CREATE completed"


def _create_with_parents(store: MailStore, account: Account, name: str, existing: set[str]) -> None:
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        if path not in existing:
            store.create_mailbox(account.address, path, subscribed=False)


async def delete(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = mailbox_name(session, args)
    args.end()
    if name == "INBOX":
        raise no("[CANNOT] INBOX cannot be deleted")
    address = state.account.address
    box = await find_mailbox(session, state.account, name)
    if any(other.startswith(name + "/") for other in await mailbox_names(session, state.account)):
        raise no(f"[INUSE] mailbox {name!r} has child mailboxes; delete them first")
    try:
        await session.stored(session.store.delete_mailbox, address, name)
    finally:  # even when the store did not answer: it may have deleted it
        session.server.mailboxes_changed(address, box.id)
    if isinstance(state, Selected) and state.view.id == box.id:
        session.deselect()
    return "DELETE completed"


async def rename(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    old = mailbox_name(session, args)
    new = new_mailbox_name(session, args)
    args.end()
    account = state.account
    existing = await mailbox_names(session, account)
    if old not in existing:
        raise no(f"[NONEXISTENT] no mailbox {old!r}")
    if new in existing or new == "INBOX":
        raise no(f"[ALREADYEXISTS] mailbox {new!r} already exists")
    if old != "INBOX" and new.startswith(old + "/"):  # INBOX's children stay where they are
        raise no(f"[CANNOT] {old!r} cannot be moved into its own subtree")
    parent = new.rpartition("/")[0]
    store = session.store
    if parent and parent not in existing:
        await session.stored(_create_with_parents, store, account, parent, existing)
    if old == "INBOX":
        inbox = await find_mailbox(session, account, "INBOX")
        async with session.server.flag_lock(inbox.id):
            await session.stored(_rename_inbox, store, account, inbox, new)
        session.server.changed(inbox.id)
    else:
        try:
            await session.stored(store.rename_mailbox, account.address, old, new)
        finally:
            session.server.mailboxes_changed(account.address)
    return "RENAME completed"


def _rename_inbox(store: MailStore, account: Account, inbox: MailboxInfo, new: str) -> None:
    """RFC 3501 6.3.5: renaming INBOX moves its messages and leaves INBOX empty."""
    target = store.create_mailbox(account.address, new, subscribed=False)
    uids = [m.uid for m in store.messages(inbox.id)]
    store.copy(inbox.id, uids, target.id)
    store.set_flags(inbox.id, uids, frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id, uids)


async def subscribe(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = mailbox_name(session, args)
    args.end()
    subscribed = request.name == "SUBSCRIBE"
    try:
        await session.stored(session.store.set_subscribed, state.account.address, name, subscribed)
    except MailboxNotFound:
        raise no(f"[NONEXISTENT] no mailbox {name!r}") from None
    return f"{request.name} completed"


COMMANDS: dict[str, Command[LoggedIn]] = {
    "ENABLE": Command(enable, LOGGED_IN),
    "NAMESPACE": Command(namespace, LOGGED_IN),
    "LIST": Command(list_mailboxes, LOGGED_IN),
    "LSUB": Command(lsub, LOGGED_IN),
    "STATUS": Command(status, LOGGED_IN),
    "CREATE": Command(create, LOGGED_IN),
    "DELETE": Command(delete, LOGGED_IN),
    "RENAME": Command(rename, LOGGED_IN),
    "SUBSCRIBE": Command(subscribe, LOGGED_IN),
    "UNSUBSCRIBE": Command(subscribe, LOGGED_IN),
}
