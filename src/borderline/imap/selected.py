"""The selected mailbox as one session sees it: sequence numbers, flags, pending changes.

Each session keeps its own view; other sessions' changes reach it only through `sync`, which
diffs the store against the view and yields the untagged responses that make the client's
sequence numbers agree again (RFC 3501 7.4.1, 5.5).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from borderline.imap.protocol import SequenceSet, flag_list
from borderline.store import MailboxInfo, MailStore, MessageInfo


class Selected:
    def __init__(self, store: MailStore, mailbox: MailboxInfo, readonly: bool) -> None:
        self.store = store
        self.mailbox = mailbox
        self.readonly = readonly
        self.modseq = mailbox.highestmodseq
        self.uids: list[int] = []
        self.info: dict[int, MessageInfo] = {}
        self.expunge_pending = False
        self._load(store.messages(mailbox.id))

    def _load(self, messages: Iterable[MessageInfo]) -> None:
        for message in messages:
            self.uids.append(message.uid)
            self.info[message.uid] = message

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

    def update(self, messages: Iterable[MessageInfo]) -> None:
        for message in messages:
            if message.uid in self.info:
                self.info[message.uid] = message

    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Drop expunged messages from the view; EXPUNGE lines, each with the then-current
        sequence number, so removing several in one go stays right for the client."""
        lines = []
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            del self.info[uid]
            lines.append(b"* %d EXPUNGE" % seq)
        return lines

    def _known(self, change: tuple[int, int, str]) -> bool:
        modseq, uid, kind = change
        if kind == "flags":
            info = self.info.get(uid)
            return info is not None and info.modseq == modseq
        return kind == "expunge" and uid not in self.info

    def sync(self, allow_expunge: bool, modseq: bool = False) -> list[bytes]:
        """Untagged EXPUNGE / FETCH FLAGS / EXISTS for what changed in the store since the
        last sync. While expunges may not be announced (during FETCH, STORE, SEARCH), the
        vanished messages stay in the view and are announced at the next chance. With
        `modseq` (CONDSTORE enabled) flag changes carry the message's MODSEQ."""
        changes = self.store.changes_since(self.id, self.modseq)
        if not changes and not (allow_expunge and self.expunge_pending):
            return []
        if changes:
            self.modseq = changes[-1][0]
            if not self.expunge_pending and all(self._known(c) for c in changes):
                return []  # this session's own STORE/EXPUNGE: no reload of a big mailbox
        fresh = {m.uid: m for m in self.store.messages(self.id)}
        lines: list[bytes] = []
        gone = [uid for uid in self.uids if uid not in fresh]
        if allow_expunge:
            lines += self.remove(gone)
            self.expunge_pending = False
        else:
            self.expunge_pending = bool(gone)
        for index, uid in enumerate(self.uids):
            now = fresh.get(uid)
            if now is not None and now.flags != self.info[uid].flags:
                self.info[uid] = now
                line = b"* %d FETCH (UID %d FLAGS %s" % (index + 1, uid, flag_list(now.flags))
                lines.append(line + (b" MODSEQ (%d))" % now.modseq if modseq else b")"))
        added = sorted(uid for uid in fresh if uid > self.largest_uid)
        if added:
            self._load(fresh[uid] for uid in added)
            lines.append(b"* %d EXISTS" % self.exists)
        return lines
