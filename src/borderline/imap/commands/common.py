"""What several commands read the same way: mailbox names, flag lists, modifiers, batches."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from borderline.imap.fetch import SUMMARY_READ_OCTETS, Contents
from borderline.imap.protocol import (
    Args,
    Atom,
    ParseError,
    SequenceSet,
    Token,
    decode_mailbox,
    encode_mailbox,
    is_number,
    quoted_or_literal,
)
from borderline.imap.replies import no
from borderline.imap.state import Account
from borderline.imap.view import MailboxView
from borderline.store import MailboxInfo, MailboxNotFound, MessageInfo, StoredSummaries

if TYPE_CHECKING:
    from borderline.imap.session import Session

MAX_MAILBOX_NAME = 1024
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
# FETCH and SEARCH read and decrypt messages in batches of up to this many, or this many
# octets; the first of a command is of FIRST_BATCH, and each next one twice the last.
FIRST_BATCH = 16
BATCH_MESSAGES = 256
BATCH_OCTETS = 8 * 1024 * 1024
# Summaries are mostly a few hundred octets: read up to this many at once (and at most
# SUMMARY_READ_OCTETS of them), whatever the messages' size.
SUMMARY_BATCH = 4096
NOTHING_STORED = StoredSummaries([], {}, 0)

Batch = list[tuple[int, MessageInfo]]


def mailbox_name(session: Session, args: Args) -> str:
    name = args.astring("mailbox name")
    if not session.utf8_names:
        try:
            name = decode_mailbox(name)
        except ParseError as exc:  # well-formed syntax, just no such mailbox (as Dovecot)
            raise no(f"[CANNOT] {exc}") from None
    if name.upper() == "INBOX":
        return "INBOX"
    name = name.rstrip("/")
    if not name or "//" in name or name.startswith("/") or any(c in name for c in "*%"):
        raise no(f"[CANNOT] {name!r} is not a valid mailbox name")
    return name


def new_mailbox_name(session: Session, args: Args) -> str:
    """A name for a mailbox about to exist (CREATE, RENAME): no control characters
    (RFC 9051 5.1 asks for Net-Unicode, RFC 5198) and at most MAX_MAILBOX_NAME octets."""
    name = mailbox_name(session, args)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        raise no("[CANNOT] mailbox names cannot contain control characters")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_MAILBOX_NAME:
        raise no(f"[CANNOT] mailbox names are limited to {MAX_MAILBOX_NAME} octets")
    return name


def encode_name(session: Session, name: str) -> bytes:
    encoded = name.encode() if session.utf8_names else encode_mailbox(name)
    return quoted_or_literal(encoded, session.utf8_names)


async def find_mailbox(
    session: Session,
    account: Account,
    name: str,
    trycreate: bool = False,
    last: bool = False,
    recent: bool = False,
) -> MailboxInfo:
    """The account's mailbox `name`, or NO; `last`: the command's last store call, which
    reads the sync after it too (Session.stored_then_changes); `recent`: with its recent
    count (MailStore.mailbox)."""
    read = session.stored_then_changes if last else session.stored
    try:
        return await read(session.store.mailbox, account.address, name, recent)
    except MailboxNotFound:
        code = "TRYCREATE" if trycreate else "NONEXISTENT"
        raise no(f"[{code}] no mailbox {name!r}") from None


async def mailbox_names(session: Session, account: Account) -> set[str]:
    boxes = await session.stored(session.store.mailboxes, account.address, False)
    return {box.name for box in boxes}


def message_set(session: Session, view: MailboxView, args: Args, by_uid: bool) -> SequenceSet:
    """A sequence set (UIDs with `by_uid`), or `$`: the messages of the last SEARCH RETURN
    (SAVE) as UIDs or as their current sequence numbers, whichever the command takes; the
    ones expunged since are left out (RFC 5182 2.1)."""
    text = args.atom("UID set" if by_uid else "sequence set")
    if text != "$":
        return SequenceSet.parse(text)
    if by_uid:
        return SequenceSet.of(session.search_result)
    sequence = (view.seq_of(uid) for uid in session.search_result)
    return SequenceSet.of([seq for seq in sequence if seq is not None])


def parse_flags(tokens: list[Token]) -> frozenset[str]:
    flags = set()
    for token in tokens:
        if not isinstance(token, Atom):
            raise ParseError("expected flag names")
        flag = str(token)
        if flag.startswith("\\"):
            canonical = next((f for f in SYSTEM_FLAGS if f.lower() == flag.lower()), None)
            if canonical is None:
                if flag.lower() == "\\recent":
                    continue
                raise ParseError(f"unknown system flag {flag}")
            flag = canonical
        elif any(c in flag for c in "*%]"):
            raise ParseError(f"bad keyword {flag}")
        flags.add(flag)
    return frozenset(flags)


def modifier(args: Args, name: str) -> int | None:
    """A `(NAME n)` modifier list after the sequence set (RFC 7162)."""
    if not isinstance(args.peek(), list):
        return None
    modifiers = args.list(f"{name} modifier")
    if (
        len(modifiers) != 2
        or not isinstance(modifiers[0], Atom)
        or modifiers[0].upper() != name
        or not isinstance(modifiers[1], Atom)
        or not is_number(modifiers[1])
    ):
        raise ParseError(f"{args.what}: expected ({name} mod-sequence)")
    return int(modifiers[1])


def batches(
    messages: Batch, count: int = BATCH_MESSAGES, limit: float = BATCH_OCTETS
) -> Iterator[Batch]:
    """(seq, message) pairs in runs of up to `count`, or fewer up to `limit` octets. The
    first runs are shorter, so the answer starts soon and later runs are read while it
    is sent."""
    batch: Batch = []
    octets = 0
    size = min(FIRST_BATCH, count)
    for item in messages:
        if batch and (len(batch) >= size or octets + item[1].size > limit):
            yield batch
            batch, octets = [], 0
            size = min(2 * size, count)
        batch.append(item)
        octets += item[1].size
    if batch:
        yield batch


def one_or_list(token: Token) -> list[Token]:
    return token if isinstance(token, list) else [token]


async def read_summaries(
    session: Session,
    contents: Contents,
    view: MailboxView,
    indexes: list[int],
    needs: list[tuple[str, ...]],
) -> tuple[list[int], StoredSummaries]:
    """Read (store thread) the summaries the session has not loaded of the view's messages
    at `indexes` (ascending), as the columns of `needs` where runs of them have those, at
    most SUMMARY_READ_OCTETS of them: the first of `indexes` they come to, and what was
    read for those."""
    wanted = contents.to_load(view.pairs(indexes), needs)
    if not wanted:
        return indexes, NOTHING_STORED
    found = await session.stored(
        session.store.summaries, view.id, wanted, needs, SUMMARY_READ_OCTETS
    )
    if found.read < len(wanted):
        first_unread = wanted[found.read][0]
        indexes = indexes[: bisect_left(indexes, first_unread, key=view.uids.__getitem__)]
    return indexes, found


async def load_summaries(
    session: Session,
    contents: Contents,
    view: MailboxView,
    indexes: list[int],
    needs: list[tuple[str, ...]],
) -> list[int]:
    """Read and decrypt (work thread) the summaries of the first of the view's messages at
    `indexes` (`read_summaries`), so their content is read only where no summary answers;
    those first ones."""
    indexes, found = await read_summaries(session, contents, view, indexes, needs)
    if found is not NOTHING_STORED:
        messages = view.pairs(indexes)
        adjacent = view.adjacent(indexes)
        await session.work(contents.load_summaries, view.id, messages, found, adjacent, needs)
        await store_computed(session, contents)
    return indexes


async def store_computed(session: Session, contents: Contents) -> None:
    """Store the summaries computed for messages stored without one (how mailboxes written
    before schema version 7 get theirs, by the sessions that read them anyway) and the
    summary columns made of summaries read as records."""
    computed = contents.take_computed()
    if computed:
        await session.stored(session.store.add_summaries, computed)
    runs, derived = contents.take_columns()
    for mailbox_id, messages, columns in runs:
        await session.stored(session.store.add_summary_columns, mailbox_id, messages, columns)
    for mailbox_id, stored in derived:
        await session.stored(
            session.store.add_summary_column,
            mailbox_id,
            stored.first_uid,
            stored.last_uid,
            stored.field,
            stored.data,
        )
