"""The selected mailbox as one session sees it: sequence numbers, flags, pending changes.

Each session keeps its own view; other sessions' changes reach it only through a sync, which
diffs the store against the view and yields the untagged responses that make the client's
sequence numbers agree again (RFC 3501 7.4.1, 5.5). A sync has two halves: `read_changes`
reads the store (on a store thread, and it may be abandoned if the store hangs, so it
changes nothing here) and `apply` updates the view (on the event loop).

The view keeps its messages as columns (UIDs, MODSEQs, shared flag sets...), not an object
per message. The columns come from the process's `Snapshots`, so selecting a mailbox that
has not changed since a session of this process last read it reads one row of the store,
and the view shares them until it changes.

The view also keeps what IMAP4rev1 makes per session: which messages are \\Recent to it (a
read-write session claims the recent messages it loads, so each is recent to one session
only, RFC 3501 2.3.2; a session that enabled IMAP4rev2 has none) and the keywords announced
in FLAGS (a client learns of a keyword in FLAGS before it meets one on a message).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from borderline.imap.protocol import SequenceSet, flag_list, uid_set_text
from borderline.store import MailboxInfo, MailboxNotFound, MailStore, MessageColumns, MessageInfo

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
SEEN = "\\Seen"
RECENT = frozenset({"\\Recent"})
NOT_KEYWORDS = frozenset(SYSTEM_FLAGS) | RECENT
# Messages of all mailboxes whose columns Snapshots keeps (about 200 octets each).
SNAPSHOT_MESSAGES = 200_000


@lru_cache(maxsize=1024)
def _with_recent(flags: frozenset[str]) -> frozenset[str]:
    """The flags of a message recent to this session: one shared set for each flag set."""
    return flags | RECENT


class Snapshots:
    """The columns last read of the mailboxes this process's sessions selected. Every
    append, flag change and expunge raises a mailbox's HIGHESTMODSEQ (docs/store.md), so
    columns are current while it stays, and columns read at an older one are brought up to
    date with what changed since (a few rows), not read again. Used on the store threads;
    the columns are immutable and shared, each view copies what it changes."""

    def __init__(self, limit: int = SNAPSHOT_MESSAGES) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._columns: OrderedDict[int, MessageColumns] = OrderedDict()
        self._messages = 0

    def read(self, store: MailStore, mailbox_id: int, highestmodseq: int) -> MessageColumns:
        """The mailbox's columns at `highestmodseq` or later (store thread)."""
        with self._lock:
            kept = self._columns.get(mailbox_id)
            if kept is not None and kept.highestmodseq >= highestmodseq:
                self._columns.move_to_end(mailbox_id)
                return kept
        columns = None
        if kept is not None:
            columns = _patched(kept, store.message_columns(mailbox_id, kept.highestmodseq))
        if columns is None:
            columns = store.message_columns(mailbox_id)
        with self._lock:
            old = self._columns.get(mailbox_id)
            if old is not None and old.highestmodseq > columns.highestmodseq:
                return columns  # another thread read later ones meanwhile
            if old is not None:
                self._messages -= len(self._columns.pop(mailbox_id).uids)
            if len(columns.uids) <= self.limit:
                self._columns[mailbox_id] = columns
                self._messages += len(columns.uids)
            while self._messages > self.limit:
                self._messages -= len(self._columns.popitem(last=False)[1].uids)
        return columns


def _patched(old: MessageColumns, since: MessageColumns) -> MessageColumns | None:
    """`old` with what changed since it was read (`message_columns` since its
    HIGHESTMODSEQ); None if a changed message is not where UID order puts it."""
    columns = [list(column) for column in _fields(old)]
    uids = columns[0]
    for uid in reversed(since.expunged):
        index = bisect_left(uids, uid)
        if index < len(uids) and uids[index] == uid:
            for column in columns:
                del column[index]
    changed = _fields(since)
    for at, uid in enumerate(since.uids):
        if not uids or uid > uids[-1]:  # appended: this one and all after it
            for column, values in zip(columns, changed, strict=True):
                column.extend(values[at:])
            break
        index = bisect_left(uids, uid)
        if uids[index] != uid:
            return None
        for column, values in zip(columns, changed, strict=True):
            column[index] = values[at]
    return MessageColumns(since.highestmodseq, since.uidnext, *map(tuple, columns))


class WouldWrite(Exception):
    """A read of changes that may not write met new messages to claim \\Recent of."""


@dataclass(frozen=True)
class Changes:
    """What a sync read: the new highest modseq, and the mailbox's messages when the view
    must be diffed against them (None when only this session's own changes happened), and
    the first UID of the new ones that is recent to this session."""

    modseq: int
    messages: MessageColumns | None
    recent_from: int = 0


class _Messages(Mapping[int, MessageInfo]):
    """`MailboxView.info`: the view's messages by UID, each made a MessageInfo when asked."""

    def __init__(self, view: MailboxView) -> None:
        self._view = view

    def __getitem__(self, uid: int) -> MessageInfo:
        index = self._view.index_of(uid)
        if index is None:
            raise KeyError(uid)
        return self._view.message_at(index)

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self._view.index_of(uid) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self._view.uids)

    def __len__(self) -> int:
        return len(self._view.uids)


class MailboxView:
    def __init__(
        self,
        store: MailStore,
        snapshots: Snapshots,
        mailbox: MailboxInfo,
        columns: MessageColumns,
        recent_from: int,
        readonly: bool,
        epoch: int = 0,
        recent: bool = True,
    ) -> None:
        self.store = store
        self.snapshots = snapshots
        self.mailbox = mailbox
        self.readonly = readonly
        # Whether this session has \Recent at all: IMAP4rev2 removed it (RFC 9051 appendix E).
        self.tracks_recent = recent
        # The server's count of deletes and renames of the account's mailboxes when this view
        # last made sure its mailbox is still there (see Session.check_selected).
        self.epoch = epoch
        self.modseq = columns.highestmodseq
        self.uidnext = columns.uidnext
        # The snapshot's own columns, shared with the process's other views of the mailbox
        # until this one changes (`_own`): most views never do, and a copy of 100,000
        # messages' columns costs milliseconds and megabytes per session.
        self.uids: Sequence[int] = columns.uids
        self.modseqs: Sequence[int] = columns.modseqs
        self.flags: Sequence[frozenset[str]] = columns.flags
        self.internal_dates: Sequence[float] = columns.internal_dates
        self.sizes: Sequence[int] = columns.sizes
        self.blob_ids: Sequence[int] = columns.blob_ids
        self._owned = False
        self.info: Mapping[int, MessageInfo] = _Messages(self)
        self.expunge_pending = False
        self.recent: set[int] = set()
        self.keywords: set[str] = set()
        self._learn(columns.flag_sets)
        self._mark_recent(bisect_left(self.uids, recent_from) if self.uids else 0)

    @classmethod
    def open(
        cls,
        store: MailStore,
        snapshots: Snapshots,
        account: str,
        name: str,
        readonly: bool,
        epoch: int,
        recent: bool = True,
    ) -> MailboxView:
        """The view of the account's mailbox `name` for SELECT or EXAMINE (store thread):
        the mailbox's row, and its messages only if it changed since they were last read
        here. MailboxNotFound if there is no such mailbox. Without `recent` (IMAP4rev2)
        the view neither shows nor claims recent messages: they stay recent to others."""
        box = store.mailbox(account, name, recent=False)
        columns = snapshots.read(store, box.id, box.highestmodseq)
        recent_from = box.first_recent_uid if recent else columns.uidnext
        # EXAMINE only looks (RFC 3501 6.3.2).
        if not readonly and columns.uids and recent_from <= columns.uids[-1]:
            recent_from = store.claim_recent(box.id, columns.uids[-1])
        return cls(store, snapshots, box, columns, recent_from, readonly, epoch, recent)

    def _learn(self, flag_sets: Iterable[frozenset[str]]) -> None:
        for flags in flag_sets:
            if not flags <= NOT_KEYWORDS:
                self.keywords.update(flags - NOT_KEYWORDS)

    def _mark_recent(self, start: int) -> None:
        """The messages from index `start` on are recent to this session."""
        if start >= len(self.uids):
            return
        flags = self._own()[2]
        for index in range(start, len(self.uids)):
            self.recent.add(self.uids[index])
            flags[index] = _with_recent(flags[index])

    def flags_lines(self) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS: the system flags and every keyword known here."""
        known = " ".join([*SYSTEM_FLAGS, *sorted(self.keywords)])
        permanent = "" if self.readonly else known + " \\*"
        return [
            f"* FLAGS ({known})".encode(),
            f"* OK [PERMANENTFLAGS ({permanent})] flags permitted".encode(),
        ]

    @property
    def id(self) -> int:
        return self.mailbox.id

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def largest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def first_unseen(self) -> int | None:
        """The sequence number of the first message without \\Seen, if any."""
        return next((i + 1 for i, flags in enumerate(self.flags) if SEEN not in flags), None)

    def index_of(self, uid: int) -> int | None:
        index = bisect_left(self.uids, uid)
        return index if index < len(self.uids) and self.uids[index] == uid else None

    def seq_of(self, uid: int) -> int | None:
        index = self.index_of(uid)
        return None if index is None else index + 1

    def pairs(self, indexes: list[int]) -> list[tuple[int, int]]:
        """(UID, blob id) of the messages at `indexes`: what their summaries are read by."""
        if self.adjacent(indexes):
            run = slice(indexes[0], indexes[-1] + 1)
            return list(zip(self.uids[run], self.blob_ids[run], strict=True))
        return [(self.uids[i], self.blob_ids[i]) for i in indexes]

    @staticmethod
    def adjacent(indexes: list[int]) -> bool:
        """Whether these indexes (ascending, each once) leave no message out between them."""
        return bool(indexes) and indexes[-1] - indexes[0] == len(indexes) - 1

    def message_at(self, index: int) -> MessageInfo:
        """The message at `index` (its sequence number less one) with its session flags."""
        return MessageInfo._make([column[index] for column in self._columns()])

    def messages_at(self, indexes: list[int]) -> list[tuple[int, MessageInfo]]:
        """(sequence number, message) of the messages at `indexes` (ascending), made a
        column at a time: a FETCH or SEARCH of a big mailbox makes thousands, which one by
        one cost 1 us each on the event loop (and a cache of them a session's memory)."""
        if self.adjacent(indexes):
            run = slice(indexes[0], indexes[-1] + 1)
            numbers: Iterable[int] = range(indexes[0] + 1, indexes[-1] + 2)
            columns = [column[run] for column in self._columns()]
        else:
            numbers = [index + 1 for index in indexes]
            columns = [[column[index] for index in indexes] for column in self._columns()]
        return list(zip(numbers, map(MessageInfo._make, zip(*columns, strict=True)), strict=True))

    def _columns(self) -> tuple[Sequence[Any], ...]:
        """The columns a MessageInfo is made of, in its order."""
        return (
            self.uids,
            self.modseqs,
            self.flags,
            self.internal_dates,
            self.sizes,
            self.blob_ids,
        )

    def indexes(self, numbers: SequenceSet, by_uid: bool) -> list[int]:
        """The indexes of the messages a sequence or UID set names, in mailbox order."""
        if not self.uids:
            return []
        picked: set[int] = set()
        if by_uid:
            for low, high in numbers.resolve(self.largest_uid):
                picked.update(range(bisect_left(self.uids, low), bisect_left(self.uids, high + 1)))
        else:
            for low, high in numbers.resolve(len(self.uids)):
                picked.update(range(low - 1, min(high, len(self.uids))))
        return sorted(picked)

    def resolve(self, numbers: SequenceSet, by_uid: bool) -> list[tuple[int, MessageInfo]]:
        """(seq, message) pairs named by a sequence or UID set, in mailbox order."""
        return self.messages_at(self.indexes(numbers, by_uid))

    def _set(self, index: int, modseq: int, flags: frozenset[str]) -> None:
        uid = self.uids[index]
        self._learn([flags])
        _, modseqs, flag_sets, *_ = self._own()
        modseqs[index] = modseq
        flag_sets[index] = _with_recent(flags) if uid in self.recent else flags

    def update(self, messages: Iterable[MessageInfo]) -> list[bytes]:
        """Take this session's own flag changes; FLAGS lines first if they brought keywords
        the client has not been told of."""
        known = len(self.keywords)
        for message in messages:
            index = self.index_of(message.uid)
            if index is not None:
                self._set(index, message.modseq, message.flags)
        return self.flags_lines() if len(self.keywords) > known else []

    def remove(self, uids: Iterable[int], vanished: bool = False) -> list[bytes]:
        """Drop expunged messages from the view; EXPUNGE lines, each with the then-current
        sequence number, so removing several in one go stays right for the client. With
        `vanished` (QRESYNC enabled, RFC 7162 3.2.10) one VANISHED line instead."""
        lines = []
        gone = []
        owned: list[list[Any]] | None = None
        for uid in sorted(set(uids), reverse=True):
            index = self.index_of(uid)
            if index is None:
                continue
            if owned is None:
                owned = self._own()
            for column in owned:
                del column[index]
            self.recent.discard(uid)
            lines.append(b"* %d EXPUNGE" % (index + 1))
            gone.append(uid)
        if vanished:
            return [f"* VANISHED {uid_set_text(sorted(gone))}".encode()] if gone else []
        return lines

    def _own(self) -> list[list[Any]]:
        """The columns, as this view's own lists (copied from the snapshot's at the first
        change), to change in place; in the order of `_fields`."""
        if not self._owned:
            self._owned = True
            for name in COLUMN_NAMES:
                setattr(self, name, list(getattr(self, name)))
        return [getattr(self, name) for name in COLUMN_NAMES]

    def _known(self, change: tuple[int, int, str]) -> bool:
        modseq, uid, kind = change
        index = self.index_of(uid)
        if kind == "flags":
            return index is not None and self.modseqs[index] == modseq
        return kind == "expunge" and index is None

    def current(self) -> MailboxInfo | None:
        """The mailbox as the store has it now (store thread), if it still exists and is
        still the account's: the same id and UIDVALIDITY, under its name or, after a rename
        by another session, under another (RFC 2180 3.4)."""
        account = self.mailbox.account
        try:
            box: MailboxInfo | None = self.store.mailbox(account, self.mailbox.name, False)
        except MailboxNotFound:
            box = None
        if box is not None and self._same(box):
            return box
        return next((b for b in self.store.mailboxes(account, False) if self._same(b)), None)

    def _same(self, box: MailboxInfo) -> bool:
        mine = self.mailbox
        return (box.id, box.uidvalidity, box.account) == (mine.id, mine.uidvalidity, mine.account)

    def read_changes(self, allow_expunge: bool, may_write: bool = True) -> Changes | None:
        """What changed in the store since the last sync (store thread; changes nothing of
        the view). It claims the new messages' \\Recent, a write; without `may_write`
        it raises WouldWrite instead (the read is then left to a sync of its own)."""
        changes = self.store.changes_since(self.id, self.modseq)
        if not changes and not (allow_expunge and self.expunge_pending):
            return None
        modseq = changes[-1][0] if changes else self.modseq
        if changes and not self.expunge_pending and all(self._known(c) for c in changes):
            return Changes(modseq, None)  # this session's own STORE/EXPUNGE: no reload
        try:
            columns = self.snapshots.read(self.store, self.id, modseq)
        except MailboxNotFound:  # deleted meanwhile: its messages are gone with it
            columns = MessageColumns(modseq, self.uidnext)
        uids = columns.uids
        largest = self.largest_uid
        try:
            recent_from = self._recent_from(uids, largest, may_write)
        except MailboxNotFound:  # deleted meanwhile: the next command ends the session
            recent_from = uids[-1] + 1
        return Changes(max(modseq, columns.highestmodseq), columns, recent_from)

    def _recent_from(self, uids: tuple[int, ...], largest: int, may_write: bool = True) -> int:
        """The first UID of the messages new to this view that is recent to this session:
        read-write sessions claim them, read-only ones only look (RFC 3501 6.3.2), and
        without \\Recent none is. WouldWrite if a claim is due and may not be made (one
        another session made already is not)."""
        if not uids or uids[-1] <= largest:
            return 0
        if not self.tracks_recent:
            return uids[-1] + 1
        claim = not self.readonly
        first = self.store.claim_recent(self.id, uids[-1], claim=claim and may_write)
        if claim and not may_write and first <= uids[-1]:
            raise WouldWrite
        return first

    def apply(
        self, changes: Changes, allow_expunge: bool, modseq: bool = False, vanished: bool = False
    ) -> list[bytes]:
        """Untagged EXPUNGE / FETCH FLAGS / EXISTS that bring the view up to `changes`.
        While expunges may not be announced (during FETCH, STORE, SEARCH), the vanished
        messages stay in the view and are announced at the next chance. With `modseq`
        (CONDSTORE enabled) flag changes carry the message's MODSEQ; with `vanished`
        (QRESYNC enabled) expunges are one VANISHED line."""
        self.modseq = max(self.modseq, changes.modseq)
        fresh = changes.messages
        if fresh is None:
            return []
        self.uidnext = max(self.uidnext, fresh.uidnext)
        lines: list[bytes] = []
        position = {uid: index for index, uid in enumerate(fresh.uids)}
        gone = [uid for uid in self.uids if uid not in position]
        if allow_expunge:
            lines += self.remove(gone, vanished)
            self.expunge_pending = False
        else:
            self.expunge_pending = bool(gone)
        known = len(self.keywords)
        fetches: list[bytes] = []
        for index, uid in enumerate(self.uids):
            at = position.get(uid)
            if at is None or fresh.modseqs[at] == self.modseqs[index]:
                continue
            before = self.flags[index]
            self._set(index, fresh.modseqs[at], fresh.flags[at])
            now = self.flags[index]
            if now != before:
                line = b"* %d FETCH (UID %d FLAGS %s" % (index + 1, uid, flag_list(now))
                fetches.append(line + (b" MODSEQ (%d))" % self.modseqs[index] if modseq else b")"))
        start = bisect_left(fresh.uids, self.largest_uid + 1)
        if start < len(fresh.uids):
            first_new = len(self.uids)
            for column, values in zip(self._own(), _fields(fresh), strict=True):
                column.extend(values[start:])
            self._learn(set(fresh.flags[start:]))
            self._mark_recent(bisect_left(self.uids, changes.recent_from, first_new))
        if len(self.keywords) > known:
            lines += self.flags_lines()
        lines += fetches
        if start < len(fresh.uids):
            lines.append(b"* %d EXISTS" % self.exists)
            if self.tracks_recent:
                lines.append(b"* %d RECENT" % len(self.recent))
        return lines


# A view's columns, in the order of `_fields`.
COLUMN_NAMES = ("uids", "modseqs", "flags", "internal_dates", "sizes", "blob_ids")


def _fields(columns: MessageColumns) -> list[tuple[Any, ...]]:
    """The columns in the order of MailboxView._own."""
    c = columns
    return [c.uids, c.modseqs, c.flags, c.internal_dates, c.sizes, c.blob_ids]
