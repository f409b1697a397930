"""Commands on the account and its mailboxes (RFC 9051 6.3): ENABLE, NAMESPACE, LIST, LSUB,
STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
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
from borderline.imap.protocol import ParseError, Token, as_text, decode_mailbox
from borderline.imap.replies import no
from borderline.imap.state import Account, LoggedIn, Selected
from borderline.store import MailboxInfo, MailboxNotFound, MailStore, MessageColumns

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
        elif capability == "QRESYNC":  # implies CONDSTORE (RFC 7162 3.2.3)
            session.enable_condstore()
            session.qresync = True
            enabled.append(capability)
        elif capability == "IMAP4REV2":  # RFC 9051 appendix A
            session.imap4rev2 = True
            enabled.append("IMAP4rev2")
    session.emit(("* ENABLED " + " ".join(enabled)).rstrip().encode())
    return "ENABLE completed"


async def namespace(session: Session, state: LoggedIn, request: Request) -> str:
    request.args.end()
    session.emit(b'* NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"


# LIST-EXTENDED (RFC 5258) selection and return options, SPECIAL-USE's (RFC 6154) and
# LIST-STATUS's (RFC 5819) among them.
SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
MAX_PATTERNS = 100


@dataclass
class ListRequest:
    """What LIST asked for; `extended` when it used any RFC 5258 syntax."""

    patterns: list[str]
    selection: set[str] = field(default_factory=set)
    returns: set[str] = field(default_factory=set)
    status: list[str] = field(default_factory=list)
    extended: bool = False


async def list_mailboxes(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    wanted = ListRequest([])
    if isinstance(args.peek(), list):
        wanted.extended = True
        wanted.selection = _options(args.list("selection options"), SELECTION_OPTIONS, "selection")
        if "RECURSIVEMATCH" in wanted.selection and not wanted.selection & {
            "SUBSCRIBED",
            "SPECIAL-USE",
        }:
            raise ParseError("LIST: RECURSIVEMATCH needs another selection option beside it")
    reference = args.astring("reference name")
    pattern_token = args.next("pattern")
    wanted.extended |= isinstance(pattern_token, list)
    patterns = [as_text(t, "LIST: bad pattern") for t in one_or_list(pattern_token)]
    if not patterns or len(patterns) > MAX_PATTERNS:
        raise ParseError(f"LIST: give 1 to {MAX_PATTERNS} patterns")
    wanted.patterns = [reference + pattern for pattern in patterns]
    if args.more():
        if args.atom("RETURN").upper() != "RETURN":
            raise ParseError("LIST: expected RETURN")
        wanted.extended = True
        _return_options(session, args.list("return options"), wanted)
    args.end()
    if "SUBSCRIBED" in wanted.selection:
        wanted.returns.add("SUBSCRIBED")  # RFC 5258 3: the selection option implies it
    await _list(session, state.account, "LIST", wanted)
    return "LIST completed"


def _options(tokens: list[Token], known: frozenset[str], kind: str) -> set[str]:
    options = {as_text(t, f"LIST: bad {kind} option").upper() for t in tokens}
    unknown = options - known
    if unknown:
        raise ParseError(f"LIST: unknown {kind} option {sorted(unknown)[0][:40]}")
    return options


def _return_options(session: Session, tokens: list[Token], wanted: ListRequest) -> None:
    """RETURN (...): STATUS takes the list of status items after it (RFC 5819)."""
    for index, token in enumerate(tokens):
        if isinstance(token, list):
            previous = tokens[index - 1] if index else None
            if not (isinstance(previous, str) and previous.upper() == "STATUS"):
                raise ParseError("LIST: a parenthesized list in RETURN only follows STATUS")
            wanted.status = _status_items(session, token)
            continue
        option = as_text(token, "LIST: bad return option").upper()
        if option not in RETURN_OPTIONS:
            raise ParseError(f"LIST: unknown return option {option[:40]}")
        if option == "STATUS" and not (
            index + 1 < len(tokens) and isinstance(tokens[index + 1], list)
        ):
            raise ParseError("LIST: RETURN STATUS needs a list of status items")
        wanted.returns.add(option)


async def lsub(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    reference = args.astring("reference name")
    pattern = args.astring("pattern")
    args.end()
    await _list(session, state.account, "LSUB", ListRequest([reference + pattern], {"SUBSCRIBED"}))
    return "LSUB completed"


def _pattern_regex(session: Session, full: str) -> re.Pattern[str]:
    if not session.utf8_names:
        # A pattern that is not modified UTF-7 is matched as it is (it matches nothing).
        with contextlib.suppress(ParseError):
            full = decode_mailbox(full)
    if full[:5].upper() == "INBOX":  # INBOX is case-insensitive (RFC 3501 5.1)
        full = "INBOX" + full[5:]
    body = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
    return re.compile(f"^{body}$", re.DOTALL)


async def _list(session: Session, account: Account, kind: str, wanted: ListRequest) -> None:
    if wanted.patterns == [""] and not wanted.extended:
        session.emit(f'* {kind} (\\Noselect) "/" ""'.encode())
        return
    regexes = [_pattern_regex(session, full) for full in wanted.patterns]
    recent = "STATUS" in wanted.returns and "RECENT" in wanted.status
    read = session.stored_then_changes(session.store.mailboxes, account.address, recent)
    boxes = {box.name: box for box in await read}
    lost: list[str] = []
    if "SUBSCRIBED" in wanted.selection:
        lost = await session.stored(session.store.lost_subscriptions, account.address)
    names = set(boxes) | set(lost)
    parents = {name.rpartition("/")[0] for name in names} - {""}
    while parents - names:  # implied parents of names that exist (or are subscribed)
        names |= parents
        parents = {name.rpartition("/")[0] for name in parents} - {""}
    subscribed = {name for name, box in boxes.items() if box.subscribed} | set(lost)

    def selected(name: str) -> bool:
        box = boxes.get(name)
        if "SUBSCRIBED" in wanted.selection and name not in subscribed:
            return False
        if "SPECIAL-USE" in wanted.selection and (box is None or not box.special_use):
            return False
        return box is not None or name in subscribed

    picked = {name for name in names if selected(name)}
    childinfo = sorted(wanted.selection & {"SUBSCRIBED", "SPECIAL-USE"})
    for name in sorted(names):
        if not any(r.match(name) for r in regexes):
            continue
        # RECURSIVEMATCH: a parent is listed for its selected descendants the patterns miss.
        info = "RECURSIVEMATCH" in wanted.selection and any(
            other.startswith(name + "/") and not any(r.match(other) for r in regexes)
            for other in picked
        )
        if name not in picked and not info:
            continue
        box = boxes.get(name)
        attributes = []
        if box is None:
            attributes.append("\\NonExistent" if wanted.extended else "\\Noselect")
        if any(other.startswith(name + "/") for other in boxes):
            attributes.append("\\HasChildren")
        elif box is not None:
            attributes.append("\\HasNoChildren")
        if box is not None and box.special_use and kind == "LIST":
            attributes.append(box.special_use)
        if name in subscribed and "SUBSCRIBED" in wanted.returns and name in picked:
            attributes.append("\\Subscribed")
        line = f'* {kind} ({" ".join(attributes)}) "/" '.encode() + encode_name(session, name)
        if info:
            quoted = " ".join(f'"{c}"' for c in childinfo)
            line += f' ("CHILDINFO" ({quoted}))'.encode()
        session.emit(line)
        if box is not None and "STATUS" in wanted.returns:
            await _emit_status(session, box, wanted.status)
    if kind == "LSUB":
        for parent in _unsubscribed_parents(list(boxes.values()), regexes):
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


STATUS_ITEMS = frozenset(
    {"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "HIGHESTMODSEQ", "SIZE", "DELETED"}
)


def _status_items(session: Session, tokens: list[Token]) -> list[str]:
    items = [as_text(t, "STATUS: bad item").upper() for t in tokens]
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"STATUS: unknown item {item[:40]}")
        if item == "RECENT" and session.imap4rev2:
            raise ParseError("STATUS: RECENT is not an IMAP4rev2 item (RFC 9051 appendix E)")
    if not items or len(items) > len(STATUS_ITEMS):
        raise ParseError("STATUS: give each status item at most once")
    return items


async def status(session: Session, state: LoggedIn, request: Request) -> str:
    args = request.args
    name = mailbox_name(session, args)
    wanted = _status_items(session, args.list("status items"))
    args.end()
    box = await find_mailbox(session, state.account, name, last=True, recent="RECENT" in wanted)
    await _emit_status(session, box, wanted)
    return "STATUS completed"


async def _emit_status(session: Session, box: MailboxInfo, wanted: list[str]) -> None:
    columns: MessageColumns | None = None
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
        else:
            # SIZE and DELETED from the columns SELECT reads (kept while the mailbox stays).
            if columns is None:
                snapshots, store = session.server.snapshots, session.store
                columns = await session.stored(snapshots.read, store, box.id, box.highestmodseq)
            if item == "SIZE":
                value = sum(columns.sizes)
            else:
                value = sum(1 for flags in columns.flags if "\\Deleted" in flags)
        values.append(f"{item} {value}")
    session.emit(b"* STATUS " + encode_name(session, box.name) + f" ({' '.join(values)})".encode())


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
