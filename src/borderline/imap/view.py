"""The selected mailbox as one session sees it: sequence numbers, flags, pending changes.

Each session keeps its own view; other sessions' changes reach it only through a sync, which
diffs the store against the view and yields the untagged responses that make the client's
sequence numbers agree again (RFC 3501 7.4.1, 5.5). A sync has two halves: `read_changes`
reads the store (on a store thread, and it may be abandoned if the store hangs, so it
changes nothing here) and `apply` updates the view (on the event loop).

The view also keeps what IMAP4rev1 makes per session: which messages are \\Recent to it (a
read-write session claims the recent messages it loads, so each is recent to one session
only, RFC 3501 2.3.2) and the keywords announced in FLAGS (a client learns of a keyword in
FLAGS before it meets one on a message).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, replace

from borderline.imap.protocol import SequenceSet, flag_list, uid_set_text
from borderline.store import MailboxInfo, MailboxNotFound, MailStore, MessageInfo

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = frozenset({"\\Recent"})
NOT_KEYWORDS = frozenset(SYSTEM_FLAGS) | RECENT


@dataclass(frozen=True)
class Changes:
    """What a sync read: the new highest modseq, and the mailbox's messages when the view
    must be diffed against them (None when only this session's own changes happened), and
    the first UID of the new ones that is recent to this session."""

    modseq: int
    messages: dict[int, MessageInfo] | None
    recent_from: int = 0


class MailboxView:
    def __init__(
        self, store: MailStore, mailbox: MailboxInfo, readonly: bool, epoch: int = 0
    ) -> None:
        self.store = store
        self.mailbox = mailbox
        self.readonly = readonly
        # The server's count of deletes and renames of the account's mailboxes when this view
        # last made sure its mailbox is still there (see Session.check_selected).
        self.epoch = epoch
        self.modseq = mailbox.highestmodseq
        self.uids: list[int] = []
        self.info: dict[int, MessageInfo] = {}
        self.expunge_pending = False
        self.recent: set[int] = set()
        self.keywords: set[str] = set()
        messages = store.messages(mailbox.id)
        self._load(messages, self._recent_from(messages))

    def _recent_from(self, new: list[MessageInfo]) -> int:
        """The first UID of `new` (store thread) that is recent to this session: read-write
        sessions claim them, read-only ones only look (RFC 3501 6.3.2)."""
        if not new:
            return 0
        return self.store.claim_recent(self.id, new[-1].uid, claim=not self.readonly)

    def _load(self, messages: Iterable[MessageInfo], recent_from: int) -> None:
        for message in messages:
            if message.uid >= recent_from:
                self.recent.add(message.uid)
            self.uids.append(message.uid)
            self.info[message.uid] = self._as_seen(message)

    def _as_seen(self, message: MessageInfo) -> MessageInfo:
        """The message with its session flags: \\Recent, and its keywords learned."""
        self.keywords.update(message.flags - NOT_KEYWORDS)
        if message.uid in self.recent:
            return replace(message, flags=message.flags | RECENT)
        return message

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

    def seq_of(self, uid: int) -> int | None:
        index = bisect_left(self.uids, uid)
        return index + 1 if index < len(self.uids) and self.uids[index] == uid else None

    def resolve(self, numbers: SequenceSet, by_uid: bool) -> list[tuple[int, MessageInfo]]:
        """(seq, message) pairs named by a sequence or UID set, in mailbox order."""
        if not self.uids:
            return []
        picked: set[int] = set()
        if by_uid:
            for low, high in numbers.resolve(self.largest_uid):
                start = bisect_left(self.uids, low)
                end = bisect_left(self.uids, high + 1)
                picked.update(range(start, end))
        else:
            for low, high in numbers.resolve(len(self.uids)):
                picked.update(range(low - 1, min(high, len(self.uids))))
        return [(i + 1, self.info[self.uids[i]]) for i in sorted(picked)]

    def update(self, messages: Iterable[MessageInfo]) -> list[bytes]:
        """Take this session's own flag changes; FLAGS lines first if they brought keywords
        the client has not been told of."""
        known = len(self.keywords)
        for message in messages:
            if message.uid in self.info:
                self.info[message.uid] = self._as_seen(message)
        return self.flags_lines() if len(self.keywords) > known else []

    def remove(self, uids: Iterable[int], vanished: bool = False) -> list[bytes]:
        """Drop expunged messages from the view; EXPUNGE lines, each with the then-current
        sequence number, so removing several in one go stays right for the client. With
        `vanished` (QRESYNC enabled, RFC 7162 3.2.10) one VANISHED line instead."""
        lines = []
        gone = []
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            del self.info[uid]
            self.recent.discard(uid)
            lines.append(b"* %d EXPUNGE" % seq)
            gone.append(uid)
        if vanished:
            return [f"* VANISHED {uid_set_text(sorted(gone))}".encode()] if gone else []
        return lines

    def _known(self, change: tuple[int, int, str]) -> bool:
        modseq, uid, kind = change
        if kind == "flags":
            info = self.info.get(uid)
            return info is not None and info.modseq == modseq
        return kind == "expunge" and uid not in self.info

    def current(self) -> MailboxInfo | None:
        """The mailbox as the store has it now (store thread), if it still exists and is
        still the account's: the same id and UIDVALIDITY, under its name or, after a rename
        by another session, under another (RFC 2180 3.4)."""
        account = self.mailbox.account
        try:
            box: MailboxInfo | None = self.store.mailbox(account, self.mailbox.name)
        except MailboxNotFound:
            box = None
        if box is not None and self._same(box):
            return box
        return next((b for b in self.store.mailboxes(account) if self._same(b)), None)

    def _same(self, box: MailboxInfo) -> bool:
        mine = self.mailbox
        return (box.id, box.uidvalidity, box.account) == (mine.id, mine.uidvalidity, mine.account)

    def read_changes(self, allow_expunge: bool) -> Changes | None:
        """What changed in the store since the last sync (store thread; changes nothing)."""
        changes = self.store.changes_since(self.id, self.modseq)
        if not changes and not (allow_expunge and self.expunge_pending):
            return None
        modseq = changes[-1][0] if changes else self.modseq
        if changes and not self.expunge_pending and all(self._known(c) for c in changes):
            return Changes(modseq, None)  # this session's own STORE/EXPUNGE: no reload
        messages = self.store.messages(self.id)
        new = [m for m in messages if m.uid > self.largest_uid]
        try:
            recent_from = self._recent_from(new)
        except MailboxNotFound:  # deleted meanwhile: the next command ends the session
            recent_from = new[-1].uid + 1
        return Changes(modseq, {m.uid: m for m in messages}, recent_from)

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
        lines: list[bytes] = []
        gone = [uid for uid in self.uids if uid not in fresh]
        if allow_expunge:
            lines += self.remove(gone, vanished)
            self.expunge_pending = False
        else:
            self.expunge_pending = bool(gone)
        known = len(self.keywords)
        fetches: list[bytes] = []
        for index, uid in enumerate(self.uids):
            stored = fresh.get(uid)
            if stored is None:
                continue
            now = self._as_seen(stored)
            if now.flags != self.info[uid].flags:
                self.info[uid] = now
                line = b"* %d FETCH (UID %d FLAGS %s" % (index + 1, uid, flag_list(now.flags))
                fetches.append(line + (b" MODSEQ (%d))" % now.modseq if modseq else b")"))
        added = sorted(uid for uid in fresh if uid > self.largest_uid)
        if added:
            self._load((fresh[uid] for uid in added), changes.recent_from)
        if len(self.keywords) > known:
            lines += self.flags_lines()
        lines += fetches
        if added:
            lines.append(b"* %d EXISTS" % self.exists)
            lines.append(b"* %d RECENT" % len(self.recent))
        return lines
