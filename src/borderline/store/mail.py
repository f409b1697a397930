"""The mail store: every mail rule written once, over an engine (SQLite or PostgreSQL).

UIDs, UIDVALIDITY, MODSEQ and the change log, holds, expunge, COPY, relay de-duplication
and mailbox renames are decided here, in SQL both engines run. What differs between the
engines — connections, locking, a handful of SQL fragments — is in the engine (engine.py).

Concurrency: on SQLite a write transaction holds the database's write lock. On PostgreSQL
several processes write at once; every write that allocates UIDs or MODSEQs changes the
mailbox row, so it holds that row's lock until commit, and a transaction that touches
several mailboxes locks them in id order, so no two writers deadlock.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from borderline.store.base import (
    DELETED,
    SEEN,
    SPECIAL_USE_MAILBOXES,
    Change,
    Copied,
    Delivery,
    Hold,
    MailboxInfo,
    MailboxNotFound,
    MessageColumns,
    MessageInfo,
    OutboundItem,
    OutboundMessage,
    OutboundRelay,
    Placement,
    QueueEntry,
    RelayItem,
    StoredColumn,
    StoredSummaries,
    StoreError,
    apply_flag_mode,
    check_flag_mode,
    run_holding,
    run_index,
)
from borderline.store.engine import Conflict, Engine, Row, Tx

V = TypeVar("V")

_OUTBOUND_COLUMNS = (
    "id, domain, mail_from, rcpts, size, created, attempts, next_attempt, last_error,"
    " delay_notified, bounce"
)

# A run's columns: the fields of its summaries and the answers of a few HEADER.FIELDS sets.
MAX_RUN_COLUMNS = 16
RUN_SHARE = 16  # see _worth_reading
RUN_READ_MIN = 256
_MESSAGE = "SELECT uid, modseq, flags, internal_date, size, blob_id FROM messages"


def _within(
    messages: Sequence[tuple[int, int]],
    runs: Sequence[tuple[int, int]],
    run_octets: Sequence[int],
    lengths: Mapping[int, int],
    octets: int,
) -> tuple[int, list[int]]:
    """How many of these messages ((UID, blob id) pairs in UID order), from the first,
    have summaries of at most `octets` in all (at least one), a run's columns (`runs` in
    order, `run_octets` their lengths) counted whole at its first message and a single
    summary (`lengths` by blob id) at its own; and which runs hold those (their indexes)."""
    firsts = [first for first, _ in runs]
    total = 0
    held: list[int] = []
    for at, (uid, blob_id) in enumerate(messages):
        holding = run_index(runs, firsts, uid)
        if holding is None:
            cost = lengths.get(blob_id, 0)
        elif held and held[-1] == holding:
            cost = 0  # the run's columns counted at its first message here
        else:
            cost = run_octets[holding]
        if at and total + cost > octets:
            return at, held
        total += cost
        if holding is not None and (not held or held[-1] != holding):
            held.append(holding)
    return len(messages), held


def _worth_reading(run: tuple[int, int], uids: Sequence[int]) -> bool:
    """Whether a read of these messages (UIDs in order) should take the run's columns: if
    they are at least 1/RUN_SHARE of its UIDs, or RUN_READ_MIN of them. For fewer, their
    own summaries cost less than decrypting and splitting a column of every message of the
    run (one message's ENVELOPE out of a run of 3,000 was the whole column)."""
    first, last = run
    held = bisect_right(uids, last) - bisect_left(uids, first)
    return held > 0 and (held * RUN_SHARE >= last - first + 1 or held >= RUN_READ_MIN)


def _outside(runs: Sequence[tuple[int, int]], messages: Sequence[tuple[int, int]]) -> list[int]:
    """The blob ids of those messages ((UID, blob id) pairs in UID order) that none of
    these runs ((first UID, last UID), in order) holds: the gaps between the runs, cut
    out by bisection rather than a look per message."""
    uids = [uid for uid, _ in messages]
    outside: list[int] = []
    start = 0
    for first, last in runs:
        low = bisect_left(uids, first, start)
        outside += [blob_id for _, blob_id in messages[start:low]]
        start = max(start, bisect_right(uids, last, low))
    outside += [blob_id for _, blob_id in messages[start:]]
    return outside


class MailStore:
    """One region's mail: accounts, mailboxes, messages (as ciphertext blobs), the relay
    queue of sealed mail and preservation holds. Every method is one transaction (or one
    read of committed data); a method that raises has changed nothing. Failures of the
    database are StoreError; the engine bounds how long a call may wait for it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        columns = (
            "SELECT m.id, m.account, m.name, m.uidvalidity, m.uidnext, m.highestmodseq,"
            " m.special_use, m.subscribed, m.message_count, m.unseen_count, m.first_recent_uid,"
        )
        self._mailbox_uncounted = columns + " 0 FROM mailboxes m"
        # The recent ones are counted: a range of the (mailbox_id, uid) index, short once
        # a session has selected the mailbox.
        self._mailbox_select = (
            columns + " (SELECT COUNT(*) FROM messages WHERE mailbox_id = m.id"
            " AND uid >= m.first_recent_uid AND NOT expunged)"
            " FROM mailboxes m"
        )
        self._deleted = self.dialect.has_flag(DELETED)

    # accounts

    def create_account(self, address: str, password_hash: str) -> None:
        """Create the account (address lower-cased) with its special-use mailboxes
        (SPECIAL_USE_MAILBOXES), each with a new UIDVALIDITY. StoreError if it exists."""
        address = address.lower()
        with self.engine.write() as tx:
            if (
                tx.one(
                    "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING RETURNING address",
                    (address, password_hash, time.time()),
                )
                is None
            ):
                raise StoreError(f"account {address} already exists")
            validities = self._uidvalidities(tx, len(SPECIAL_USE_MAILBOXES))
            tx.run_many(
                "INSERT INTO mailboxes (account, name, uidvalidity, special_use)"
                " VALUES (?, ?, ?, ?)",
                [
                    (address, name, uidvalidity, special_use)
                    for (name, special_use), uidvalidity in zip(
                        SPECIAL_USE_MAILBOXES, validities, strict=True
                    )
                ],
            )

    def delete_account(self, address: str) -> None:
        """Delete the account (if it is still here), its mailboxes, messages and their
        ciphertext. StoreError, with nothing deleted, if a live hold covers it: checked in
        the transaction that deletes, so a hold added meanwhile wins."""
        address = address.lower()
        with self.engine.write() as tx:
            self._lock_account(tx, address)  # a hold added meanwhile wins, as its lock shows
            if self._held(tx, address):
                raise StoreError(f"{address} is under a preservation hold")
            mailbox_ids = [
                int(r[0]) for r in tx.all("SELECT id FROM mailboxes WHERE account = ?", (address,))
            ]
            ids = (self.dialect.values(mailbox_ids),)
            tx.run(f"DELETE FROM messages WHERE {self.dialect.member('mailbox_id')}", ids)
            tx.run(f"DELETE FROM changes WHERE {self.dialect.member('mailbox_id')}", ids)
            tx.run(f"DELETE FROM summary_columns WHERE {self.dialect.member('mailbox_id')}", ids)
            tx.run(
                "DELETE FROM summaries WHERE blob_id IN (SELECT id FROM blobs WHERE account = ?)",
                (address,),
            )
            for table in ("mailboxes", "lost_subscriptions", "blobs", "relay_received"):
                tx.run(f"DELETE FROM {table} WHERE account = ?", (address,))
            tx.run("DELETE FROM accounts WHERE address = ?", (address,))

    def password_hash(self, address: str) -> str | None:
        """The account's password hash, or None if there is no such account."""
        with self.engine.read() as tx:
            row = tx.one("SELECT password_hash FROM accounts WHERE address = ?", (address.lower(),))
        return None if row is None else str(row[0])

    def set_password_hash(self, address: str, password_hash: str) -> None:
        """Replace the account's password hash. StoreError if there is no such account."""
        with self.engine.write() as tx:
            if (
                tx.one(
                    "UPDATE accounts SET password_hash = ? WHERE address = ? RETURNING address",
                    (password_hash, address.lower()),
                )
                is None
            ):
                raise StoreError(f"no account {address}")

    def accounts(self) -> list[str]:
        """Every account's address, sorted."""
        with self.engine.read() as tx:
            return [str(r[0]) for r in tx.all("SELECT address FROM accounts ORDER BY address")]

    # mailboxes

    @staticmethod
    def _uidvalidities(tx: Tx, count: int) -> range:
        """`count` new UIDVALIDITYs: the current time or, if the clock is ahead of it (many
        created this second), just above the last one; never one handed out before, even
        for a mailbox since deleted. The clock row's lock orders concurrent creators."""
        now = int(time.time())
        row = tx.one(
            "UPDATE uidvalidity_clock SET last = CASE WHEN last >= ? THEN last + ? ELSE ? END"
            " RETURNING last",
            (now, count, now + count - 1),
        )
        if row is None:
            raise StoreError("the UIDVALIDITY clock row is missing")
        last = int(row[0])
        return range(last - count + 1, last + 1)

    def create_mailbox(
        self, account: str, name: str, special_use: str | None = None, subscribed: bool = True
    ) -> MailboxInfo:
        """Create an empty mailbox with a new UIDVALIDITY; its id is never one another mailbox
        had. StoreError if the account has one of that name or there is no such account.
        IMAP's CREATE leaves it unsubscribed (the client subscribes, RFC 3501 6.3.3), unless
        the name kept its subscription from a mailbox deleted before."""
        account = account.lower()
        try:
            with self.engine.write() as tx:
                if tx.one("SELECT 1 FROM accounts WHERE address = ?", (account,)) is None:
                    raise StoreError(f"no account {account}")
                if self._mailbox_id(tx, account, name) is not None:
                    raise Conflict(name)
                [uidvalidity] = self._uidvalidities(tx, 1)
                subscribed = self._found_subscription(tx, account, name) or subscribed
                row = tx.one(
                    "INSERT INTO mailboxes (account, name, uidvalidity, special_use, subscribed)"
                    " VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (account, name, uidvalidity, special_use, subscribed),
                )
        except Conflict:  # also when another process created it a moment ago
            raise StoreError(f"mailbox {name!r} already exists") from None
        assert row is not None
        return MailboxInfo(int(row[0]), account, name, uidvalidity, 1, 1, special_use, subscribed)

    @staticmethod
    def _found_subscription(tx: Tx, account: str, name: str) -> bool:
        """Take back the lost subscription of a name that has a mailbox again."""
        found = tx.one(
            "DELETE FROM lost_subscriptions WHERE account = ? AND name = ? RETURNING name",
            (account, name),
        )
        return found is not None

    def lost_subscriptions(self, account: str) -> list[str]:
        """The subscribed names that have no mailbox (deleted since), sorted."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT name FROM lost_subscriptions WHERE account = ? ORDER BY name",
                (account.lower(),),
            )
        return [str(r[0]) for r in rows]

    @staticmethod
    def _mailbox_id(tx: Tx, account: str, name: str) -> int | None:
        row = tx.one("SELECT id FROM mailboxes WHERE account = ? AND name = ?", (account, name))
        return None if row is None else int(row[0])

    @staticmethod
    def _mailbox_info(row: Row) -> MailboxInfo:
        return MailboxInfo(
            id=int(row[0]),
            account=str(row[1]),
            name=str(row[2]),
            uidvalidity=int(row[3]),
            uidnext=int(row[4]),
            highestmodseq=int(row[5]),
            special_use=None if row[6] is None else str(row[6]),
            subscribed=bool(row[7]),
            messages=int(row[8]),
            unseen=int(row[9]),
            first_recent_uid=int(row[10]),
            recent=int(row[11]),
        )

    def mailboxes(self, account: str, recent: bool = True) -> list[MailboxInfo]:
        """The account's mailboxes sorted by name; without `recent` their recent counts
        are left 0, as `mailbox` leaves them."""
        select = self._mailbox_select if recent else self._mailbox_uncounted
        with self.engine.read() as tx:
            rows = tx.all(select + " WHERE m.account = ? ORDER BY m.name", (account.lower(),))
        return [self._mailbox_info(row) for row in rows]

    def mailbox(self, account: str, name: str, recent: bool = True) -> MailboxInfo:
        """The account's mailbox of that name. MailboxNotFound if there is none. Without
        `recent` its recent count is left 0: counting reads the recent messages' rows (all
        of them where no session selected it yet), and only STATUS RECENT asks for it."""
        select = self._mailbox_select if recent else self._mailbox_uncounted
        with self.engine.read() as tx:
            row = tx.one(
                select + " WHERE m.account = ? AND m.name = ?",
                (account.lower(), name),
            )
        if row is None:
            raise MailboxNotFound(f"no mailbox {name!r}")
        return self._mailbox_info(row)

    def mailbox_by_id(self, account: str, mailbox_id: int) -> MailboxInfo:
        """The mailbox with this id, as it is now (a rename shows its new name), if it still
        exists and is the account's: how a session checks that what it selected is still
        there and still its own. MailboxNotFound otherwise. Ids are never reused, so a
        deleted mailbox's id never names another mailbox."""
        with self.engine.read() as tx:
            row = tx.one(
                self._mailbox_select + " WHERE m.id = ? AND m.account = ?",
                (mailbox_id, account.lower()),
            )
        if row is None:
            raise MailboxNotFound(f"no mailbox id {mailbox_id}")
        return self._mailbox_info(row)

    def highest_modseqs(self, mailbox_ids: Sequence[int]) -> dict[int, int]:
        """{mailbox id: HIGHESTMODSEQ} of those that exist: every delivery, flag change and
        expunge raises it, so one read tells a watcher which mailboxes changed."""
        with self.engine.read() as tx:
            rows = tx.all(
                f"SELECT id, highestmodseq FROM mailboxes WHERE {self.dialect.member('id')}",
                (self.dialect.values(sorted(mailbox_ids)),),
            )
        return {int(row[0]): int(row[1]) for row in rows}

    def claim_recent(self, mailbox_id: int, through_uid: int, claim: bool = True) -> int:
        """IMAP \\Recent: a session claims the mailbox's recent messages up to `through_uid`
        (those it has loaded), so no other session sees them as recent. Returns the first
        UID that was recent before: the session's recent messages are those from it to
        `through_uid`. Writes only when there is something to claim (and `claim`)."""
        with self.engine.read() as tx:
            row = tx.one("SELECT first_recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,))
        if row is None:
            raise MailboxNotFound(f"no mailbox id {mailbox_id}")
        if not claim or int(row[0]) > through_uid:
            return int(row[0])
        with self.engine.write() as tx:
            row = tx.one(
                f"SELECT first_recent_uid FROM mailboxes WHERE id = ?{self.dialect.for_update}",
                (mailbox_id,),
            )
            if row is None:
                raise MailboxNotFound(f"no mailbox id {mailbox_id}")
            tx.run(
                "UPDATE mailboxes SET first_recent_uid = ? WHERE id = ? AND first_recent_uid <= ?",
                (through_uid + 1, mailbox_id, through_uid),
            )
        return int(row[0])

    def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """Rename a mailbox and its children (`old/...` becomes `new/...`), keeping their
        ids, UIDVALIDITY and messages. MailboxNotFound if `old` does not exist; StoreError
        if `new` or a child's new name exists, or `new` is `old` or inside it."""
        account = account.lower()
        if new == old or new.startswith(old + "/"):
            raise StoreError(f"cannot rename {old!r} into itself ({new!r})")
        prefix = old + "/"
        try:
            with self.engine.write() as tx:
                if self._mailbox_id(tx, account, new) is not None:
                    raise Conflict(new)
                rows = tx.all(
                    "SELECT id, name FROM mailboxes WHERE account = ?"
                    " AND (name = ? OR substr(name, 1, ?) = ?)"
                    f" ORDER BY id{self.dialect.for_update}",
                    (account, old, len(prefix), prefix),
                )
                if old not in {str(r[1]) for r in rows}:
                    raise MailboxNotFound(f"no mailbox {old!r}")
                # Shortest first when names shrink, longest first when they grow: no new name
                # is ever an old one not yet renamed.
                moves = sorted(rows, key=lambda r: len(r[1]), reverse=len(new) > len(old))
                renamed = [(new + str(name)[len(old) :], mailbox_id) for mailbox_id, name in moves]
                tx.run_many("UPDATE mailboxes SET name = ? WHERE id = ?", renamed)
                found = [(i,) for name, i in renamed if self._found_subscription(tx, account, name)]
                tx.run_many("UPDATE mailboxes SET subscribed = TRUE WHERE id = ?", found)
        except Conflict:
            raise StoreError(f"mailbox {new!r} already exists") from None

    def delete_mailbox(self, account: str, name: str) -> None:
        """Delete a mailbox, its messages (a blob goes with its last message) and its change
        log; a subscription to its name stays. MailboxNotFound if it does not exist;
        StoreError, with nothing deleted, if it holds any message (live or retained) while
        the account is under a live hold."""
        account = account.lower()
        with self.engine.write() as tx:
            self._lock_account(tx, account)  # first, as _lock_for_removal says why
            row = tx.one(
                "SELECT id, subscribed FROM mailboxes WHERE account = ? AND name = ?"
                + self.dialect.for_update,
                (account, name),
            )
            if row is None:
                raise MailboxNotFound(f"no mailbox {name!r}")
            mailbox_id = int(row[0])
            # Retained messages count too: they are what a hold keeps.
            uids = [
                int(r[0])
                for r in tx.all("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))
            ]
            if uids and self._held(tx, account):
                raise StoreError(f"mailbox {name!r} holds messages under a preservation hold")
            self._remove(tx, mailbox_id, uids, held=False)
            for table in ("changes", "summary_columns"):
                tx.run(f"DELETE FROM {table} WHERE mailbox_id = ?", (mailbox_id,))
            tx.run("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row[1]:
                tx.run(
                    "INSERT INTO lost_subscriptions (account, name) VALUES (?, ?)", (account, name)
                )

    def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """Mark the mailbox (un)subscribed, or drop the lost subscription of a deleted one.
        MailboxNotFound when subscribing a name that has no mailbox. Unsubscribing a name
        that is not subscribed succeeds and changes nothing (as Dovecot's): Thunderbird
        unsubscribes a folder's old name after RENAME, which moved the subscription here."""
        account = account.lower()
        with self.engine.write() as tx:
            found = tx.one(
                "UPDATE mailboxes SET subscribed = ? WHERE account = ? AND name = ? RETURNING id",
                (subscribed, account, name),
            )
            if found is not None:
                return
            if subscribed:
                raise MailboxNotFound(f"no mailbox {name!r}")
            self._found_subscription(tx, account, name)

    # messages

    @staticmethod
    def _allocate(
        tx: Tx, added: Sequence[tuple[int, frozenset[str]]]
    ) -> dict[int, tuple[int, int]]:
        """Reserve UIDs and as many MODSEQs in each mailbox for the messages `added` (mailbox
        id, flags) and count them, locking the mailboxes in id order; {mailbox id: (first
        UID, first MODSEQ)}. A rollback gives them back, so UIDs stay contiguous.
        MailboxNotFound if one no longer exists."""
        counts = Counter(mailbox_id for mailbox_id, _ in added)
        unseen = Counter(mailbox_id for mailbox_id, flags in added if SEEN not in flags)
        order = sorted(counts)
        rows = tx.one_each(
            "UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + ?,"
            " message_count = message_count + ?, unseen_count = unseen_count + ?"
            " WHERE id = ? RETURNING uidnext, highestmodseq",
            [(counts[m], counts[m], counts[m], unseen[m], m) for m in order],
        )
        firsts: dict[int, tuple[int, int]] = {}
        for mailbox_id, row in zip(order, rows, strict=True):
            if row is None:
                raise MailboxNotFound(f"no mailbox id {mailbox_id}")
            count = counts[mailbox_id]
            firsts[mailbox_id] = (int(row[0]) - count, int(row[1]) - count + 1)
        return firsts

    def _append(
        self, tx: Tx, placed: Sequence[tuple[int, int, int, int, Delivery | MessageInfo]]
    ) -> None:
        """Insert messages at allocated (mailbox, UID, MODSEQ) with their change rows."""
        tx.run_many(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (box, uid, modseq, self.dialect.flags_param(m.flags), m.internal_date, m.size, b)
                for box, uid, modseq, b, m in placed
            ],
        )
        tx.run_many(
            "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'append')",
            [(box, modseq, uid) for box, uid, modseq, _, _ in placed],
        )

    def deliver(
        self,
        deliveries: Sequence[Delivery],
        relays: Sequence[OutboundRelay] = (),
        outbound: Sequence[OutboundMessage] = (),
    ) -> list[Placement]:
        """Commit local deliveries, sealed relays for other regions and mail to the Internet
        in one transaction: all or nothing, durable when this returns (SMTP answers 250 only
        then). Each message
        gets the next UID of its mailbox and a new MODSEQ, in the order given. A delivery with
        a relay id already stored for its account (a retried relay) is skipped. Returns where
        each stored message went, in order. MailboxNotFound, with nothing stored, if a target
        mailbox does not exist."""
        now = time.time()
        with self.engine.write() as tx:
            fresh = self._first_receipts(tx, deliveries, now)
            keys = list(dict.fromkeys((d.account.lower(), d.mailbox) for d in fresh))
            found = tx.one_each("SELECT id FROM mailboxes WHERE account = ? AND name = ?", keys)
            ids: dict[tuple[str, str], int] = {}
            for (account, name), row in zip(keys, found, strict=True):
                if row is None:
                    raise MailboxNotFound(f"no mailbox {name!r} for {account}")
                ids[account, name] = int(row[0])
            targets = [ids[d.account.lower(), d.mailbox] for d in fresh]
            firsts = self._allocate(
                tx, [(target, d.flags) for target, d in zip(targets, fresh, strict=True)]
            )
            blobs = tx.insert_large(
                "blobs", ("account", "data"), [(d.account.lower(), d.blob) for d in fresh]
            )
            placed = []
            taken: Counter[int] = Counter()
            for delivery, mailbox_id, blob_id in zip(fresh, targets, blobs, strict=True):
                first_uid, first_modseq = firsts[mailbox_id]
                offset = taken[mailbox_id]
                taken[mailbox_id] += 1
                placed.append(
                    (mailbox_id, first_uid + offset, first_modseq + offset, blob_id, delivery)
                )
            self._append(tx, placed)
            tx.run_many(
                "INSERT INTO summaries (blob_id, data) VALUES (?, ?)",
                [(b, d.summary) for _, _, _, b, d in placed if d.summary is not None],
            )
            tx.insert_large(
                "relay_queue",
                ("dest_region", "mail_from", "rcpts", "created", "next_attempt", "sealed"),
                [
                    (r.dest_region, r.mail_from, self.dialect.values(r.rcpts), now, now, r.sealed)
                    for r in relays
                ],
            )
            tx.insert_large(
                "outbound_queue",
                ("domain", "mail_from", "rcpts", "size", "created", "next_attempt", "blob"),
                [
                    (m.domain, m.mail_from, self.dialect.values(m.rcpts), m.size, now, now, m.blob)
                    for m in outbound
                ],
            )
        return [Placement(mailbox_id, uid) for mailbox_id, uid, _, _, _ in placed]

    @staticmethod
    def _first_receipts(tx: Tx, deliveries: Sequence[Delivery], now: float) -> list[Delivery]:
        """The deliveries to store: all but relayed ones whose (relay id, account) was stored
        before. The receipts are recorded in key order, so concurrent writers never deadlock."""
        keys = sorted({(d.relay_id, d.account.lower()) for d in deliveries if d.relay_id})
        if not keys:
            return list(deliveries)
        rows = tx.one_each(
            "INSERT INTO relay_received (relay_id, account, received) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING relay_id",
            [(relay_id, account, now) for relay_id, account in keys],
        )
        first = {key for key, row in zip(keys, rows, strict=True) if row is not None}
        fresh = []
        for delivery in deliveries:
            key = (delivery.relay_id, delivery.account.lower())
            if delivery.relay_id is None:
                fresh.append(delivery)
            elif key in first:
                first.discard(key)  # the same relay twice in one batch is stored once
                fresh.append(delivery)
        return fresh

    def _message_info(self, row: Row) -> MessageInfo:
        return MessageInfo(
            uid=int(row[0]),
            modseq=int(row[1]),
            flags=self.dialect.flags(row[2]),
            internal_date=float(row[3]),
            size=int(row[4]),
            blob_id=int(row[5]),
        )

    def messages(self, mailbox_id: int) -> list[MessageInfo]:
        """The mailbox's messages in UID order, without retained (expunged) ones."""
        with self.engine.read() as tx:
            rows = tx.all(
                _MESSAGE + " WHERE mailbox_id = ? AND NOT expunged ORDER BY uid", (mailbox_id,)
            )
        return [self._message_info(row) for row in rows]

    def message_columns(self, mailbox_id: int, since: int = 0) -> MessageColumns:
        """The mailbox's messages (without retained ones) in UID order as columns, with its
        HIGHESTMODSEQ and UIDNEXT, read in one statement so that they agree: a session
        that shows these messages reports changes after that HIGHESTMODSEQ. `since` a
        MODSEQ, only the messages appended or changed after it, and the UIDs expunged
        after it: what brings columns read at `since` up to these.
        MailboxNotFound if there is no such mailbox."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT b.highestmodseq, b.uidnext, m.uid, m.modseq, m.flags, m.internal_date,"
                " m.size, m.blob_id FROM mailboxes b"
                " LEFT JOIN messages m ON m.mailbox_id = b.id AND NOT m.expunged AND m.modseq > ?"
                " WHERE b.id = ? ORDER BY m.uid",
                (since, mailbox_id),
            )
            if not rows:
                raise MailboxNotFound(f"no mailbox id {mailbox_id}")
            highest, uidnext = int(rows[0][0]), int(rows[0][1])
            expunged: tuple[int, ...] = ()
            if since:
                # The change log only grows: read after the messages, it holds every
                # expunge up to the HIGHESTMODSEQ they were read with.
                gone = tx.all(
                    "SELECT uid FROM changes WHERE mailbox_id = ? AND kind = 'expunge'"
                    " AND modseq > ? AND modseq <= ? ORDER BY uid",
                    (mailbox_id, since, highest),
                )
                expunged = tuple(int(r[0]) for r in gone)
        if rows[0][2] is None:
            return MessageColumns(highest, uidnext, expunged=expunged)
        _, _, uids, modseqs, raw_flags, dates, sizes, blob_ids = zip(*rows, strict=True)
        flags = tuple(map(self.dialect.flags, raw_flags))
        columns = (uids, modseqs, flags, dates, sizes, blob_ids)
        return MessageColumns(highest, uidnext, *columns, expunged=expunged)

    def blob(self, blob_id: int) -> bytes:
        """A message's ciphertext. StoreError if there is no such blob."""
        with self.engine.read() as tx:
            row = tx.one("SELECT data FROM blobs WHERE id = ?", (blob_id,))
        if row is None:
            raise StoreError(f"no blob {blob_id}")
        return bytes(row[0])

    def blobs(self, blob_ids: Sequence[int]) -> dict[int, bytes]:
        """The ciphertexts of these blobs by id, in one read (a FETCH of many messages makes
        one store call, not one each); a blob that is gone is left out."""
        with self.engine.read() as tx:
            return self._by_blob_id(tx, "SELECT id, data FROM blobs", "id", blob_ids, bytes)

    def summaries(
        self,
        mailbox_id: int,
        messages: Sequence[tuple[int, int]],
        needs: Sequence[Sequence[str]] = (),
        octets: int | None = None,
    ) -> StoredSummaries:
        """The encrypted summaries of these messages of the mailbox ((UID, blob id) pairs,
        in UID order), in one read. `needs`: what the reader answers, each as the columns
        that answer it, preferred first. A run of columns that answers every need, the
        first column it has of each, stands for the summaries of its messages; those of
        the others are read by blob id. A message without one (stored before schema
        version 7, or gone) is left out. With `octets`, only the first messages whose
        summaries come to at most that many are read (always the first one), and `read`
        says how many: a reader bounds what it holds by octets, not by count. The octets
        are summed before the data is read (a statement of their own), so summaries
        stored between the two (computed by a session, at most a batch) may come beside."""
        if not messages:
            return StoredSummaries([], {}, 0)
        with self.engine.read() as tx:
            runs: list[tuple[int, int]] = []
            skipped: list[tuple[int, int]] = []
            picks: list[dict[int, int]] = []  # of each run, its chosen columns' lengths by id
            if needs:
                rows = tx.all(
                    "SELECT id, first_uid, last_uid, field, length(data) FROM summary_columns"
                    " WHERE mailbox_id = ? AND first_uid <= ? AND last_uid >= ?",
                    (mailbox_id, messages[-1][0], messages[0][0]),
                )
                by_run: dict[tuple[int, int], dict[str, tuple[int, int]]] = {}
                for row_id, first, last, field, length in rows:
                    fields = by_run.setdefault((int(first), int(last)), {})
                    fields[str(field)] = (int(row_id), int(length))
                uids = [uid for uid, _ in messages]
                for run, fields in sorted(by_run.items()):
                    found = [next((fields[f] for f in need if f in fields), None) for need in needs]
                    if None not in found and _worth_reading(run, uids):
                        runs.append(run)
                        picks.append(dict(pick for pick in found if pick is not None))
                    else:
                        skipped.append(run)
            read, exact = len(messages), False
            outside = _outside(runs, messages)
            if octets is not None:
                run_octets = [sum(pick.values()) for pick in picks]
                if sum(run_octets) + self._summary_octets(tx, outside) > octets:
                    lengths = self._by_blob_id(
                        tx, "SELECT blob_id, length(data) FROM summaries", "blob_id", outside, int
                    )
                    read, held = _within(messages, runs, run_octets, lengths, octets)
                    runs, picks = [runs[i] for i in held], [picks[i] for i in held]
                    outside = [b for b in _outside(runs, messages[:read]) if b in lengths]
                    exact = True
            chosen = sorted(row_id for pick in picks for row_id in pick)
            columns = []
            if chosen:
                columns = [
                    StoredColumn(str(row[0]), int(row[1]), int(row[2]), bytes(row[3]))
                    for row in tx.all(
                        "SELECT field, first_uid, last_uid, data FROM summary_columns"
                        f" WHERE {self.dialect.member('id')} ORDER BY first_uid",
                        (self.dialect.values(chosen),),
                    )
                ]
            singles = self._by_blob_id(
                tx, "SELECT blob_id, data FROM summaries", "blob_id", outside, bytes, exact
            )
        return StoredSummaries(columns, singles, read, tuple(skipped))

    def add_summary_columns(
        self, mailbox_id: int, messages: Sequence[tuple[int, int]], columns: Mapping[str, bytes]
    ) -> bool:
        """Store the columns of a new run of these messages ((UID, blob id) pairs in UID
        order): only if they are all the mailbox's messages from the first UID to the
        last, and no run holds any of them, so a run never leaves one out nor names one
        that is gone, and at most MAX_RUN_COLUMNS of them. Whether they were stored."""
        if not messages or not columns or len(columns) > MAX_RUN_COLUMNS:
            return False
        first, last = messages[0][0], messages[-1][0]
        with self.engine.write() as tx:
            if self._lock_mailbox(tx, mailbox_id) is None:
                return False
            present = tx.all(
                "SELECT uid, blob_id FROM messages WHERE mailbox_id = ? AND NOT expunged"
                " AND uid BETWEEN ? AND ? ORDER BY uid",
                (mailbox_id, first, last),
            )
            if [(int(uid), int(blob_id)) for uid, blob_id in present] != list(messages):
                return False
            if tx.one(
                "SELECT 1 FROM summary_columns WHERE mailbox_id = ? AND first_uid <= ?"
                " AND last_uid >= ?",
                (mailbox_id, last, first),
            ):
                return False
            self._insert_columns(tx, mailbox_id, first, last, columns)
        return True

    def add_summary_column(
        self, mailbox_id: int, first_uid: int, last_uid: int, field: str, data: bytes
    ) -> bool:
        """Add a column to the run of the mailbox's messages first_uid to last_uid, if the
        run is still there (none of its messages removed: removing one deletes the run),
        has no such column, and has fewer than MAX_RUN_COLUMNS. Whether it was stored."""
        with self.engine.write() as tx:
            if self._lock_mailbox(tx, mailbox_id) is None:
                return False
            fields = {
                str(row[0])
                for row in tx.all(
                    "SELECT field FROM summary_columns WHERE mailbox_id = ? AND first_uid = ?"
                    " AND last_uid = ?",
                    (mailbox_id, first_uid, last_uid),
                )
            }
            if not fields or field in fields or len(fields) >= MAX_RUN_COLUMNS:
                return False
            self._insert_columns(tx, mailbox_id, first_uid, last_uid, {field: data})
        return True

    @staticmethod
    def _insert_columns(
        tx: Tx, mailbox_id: int, first: int, last: int, columns: Mapping[str, bytes]
    ) -> None:
        tx.run_many(
            "INSERT INTO summary_columns (mailbox_id, first_uid, last_uid, field, data)"
            " VALUES (?, ?, ?, ?, ?)",
            [(mailbox_id, first, last, field, data) for field, data in columns.items()],
        )

    def _by_blob_id(
        self,
        tx: Tx,
        select: str,
        column: str,
        blob_ids: Sequence[int],
        value: Callable[[Any], V],
        exact: bool = False,
    ) -> dict[int, V]:
        """The rows (blob id, `value` of the second column) of `select` whose `column` is
        one of `blob_ids`, in one read (of those rows alone if `exact`)."""
        if not blob_ids:
            return {}
        where, params = self._blob_ids_where(column, blob_ids, exact)
        wanted = set(blob_ids)
        rows = tx.all(f"{select} WHERE {where}", params)
        return {int(row[0]): value(row[1]) for row in rows if int(row[0]) in wanted}

    def _blob_ids_where(
        self, column: str, blob_ids: Sequence[int], exact: bool = False
    ) -> tuple[str, tuple[Any, ...]]:
        """A condition that holds for rows whose `column` is one of `blob_ids`, and maybe
        for others: where the ids are most of a range (a mailbox's messages are mostly
        stored in order) and not `exact`, the range, since a range scan costs a third less
        than looking up each id of a list (the caller drops the others)."""
        low, high = min(blob_ids), max(blob_ids)
        if not exact and high - low < 2 * len(set(blob_ids)):
            return f"{column} BETWEEN ? AND ?", (low, high)
        return self.dialect.member(column), (self.dialect.values(sorted(set(blob_ids))),)

    def _summary_octets(self, tx: Tx, blob_ids: Sequence[int]) -> int:
        """The octets a read of these blobs' summaries brings, those of the other rows a
        range scan of them reads included; one aggregate, no row read out."""
        if not blob_ids:
            return 0
        where, params = self._blob_ids_where("blob_id", blob_ids)
        row = tx.one(f"SELECT sum(length(data)) FROM summaries WHERE {where}", params)
        return int(row[0] or 0) if row is not None else 0

    def add_summaries(self, summaries: Sequence[tuple[int, bytes]]) -> None:
        """Store summaries computed after the fact (blob id, ciphertext); one for a blob
        that has one already, or that is gone meanwhile, is dropped."""
        if not summaries:
            return
        with self.engine.write() as tx:
            tx.run_many(
                "INSERT INTO summaries (blob_id, data) SELECT ?, ?"
                " WHERE EXISTS (SELECT 1 FROM blobs WHERE id = ?) ON CONFLICT DO NOTHING",
                [(blob_id, data, blob_id) for blob_id, data in sorted(summaries)],
            )

    def set_flags(
        self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> list[MessageInfo]:
        """STORE: set, add or remove `flags` on the messages with these UIDs (absent or
        expunged ones are skipped). Each message whose flags change gets a new MODSEQ and a
        change row; one whose flags stay the same is untouched. Returns the changed
        messages, in the order of `uids`. StoreError for an unknown mode."""
        check_flag_mode(mode)
        wanted = list(dict.fromkeys(uids))
        if not wanted:
            return []
        with self.engine.write() as tx:
            if (
                tx.one(
                    f"SELECT id FROM mailboxes WHERE id = ?{self.dialect.for_update}", (mailbox_id,)
                )
                is None
            ):
                return []
            current = {
                info.uid: info
                for info in map(
                    self._message_info,
                    tx.all(
                        _MESSAGE + " WHERE mailbox_id = ? AND NOT expunged"
                        f" AND {self.dialect.member('uid')}",
                        (mailbox_id, self.dialect.values(wanted)),
                    ),
                )
            }
            changed = [
                (current[uid], new)
                for uid in wanted
                if uid in current
                and (new := apply_flag_mode(current[uid].flags, flags, mode)) != current[uid].flags
            ]
            if not changed:
                return []
            seen = sum((SEEN in new) - (SEEN in old.flags) for old, new in changed)
            first = self._next_modseqs(tx, mailbox_id, len(changed), seen=seen)
            updated = [
                old._replace(flags=new, modseq=first + i) for i, (old, new) in enumerate(changed)
            ]
            tx.run_many(
                "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                [(self.dialect.flags_param(m.flags), m.modseq, mailbox_id, m.uid) for m in updated],
            )
            tx.run_many(
                "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'flags')",
                [(mailbox_id, m.modseq, m.uid) for m in updated],
            )
        return updated

    @staticmethod
    def _next_modseqs(
        tx: Tx, mailbox_id: int, count: int, removed: tuple[int, int] = (0, 0), seen: int = 0
    ) -> int:
        """Reserve `count` MODSEQs in the mailbox, and take the `removed` (messages, unseen
        ones) and the newly `seen` off its counts, in one update of its row: a second one
        in the transaction would make PostgreSQL check the row's account key again, a lock
        on the account's row taken after the mailbox's (the order deadlocks). The first."""
        row = tx.one(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + ?,"
            " message_count = message_count - ?, unseen_count = unseen_count - ?"
            " WHERE id = ? RETURNING highestmodseq",
            (count, removed[0], removed[1] + seen, mailbox_id),
        )
        if row is None:
            raise MailboxNotFound(f"no mailbox id {mailbox_id}")
        return int(row[0]) - count + 1

    def _lock_mailbox(self, tx: Tx, mailbox_id: int) -> str | None:
        """Lock the mailbox row for the transaction; its account, or None if it is gone."""
        row = tx.one(
            f"SELECT account FROM mailboxes WHERE id = ?{self.dialect.for_update}", (mailbox_id,)
        )
        return None if row is None else str(row[0])

    def _lock_for_removal(self, tx: Tx, mailbox_id: int) -> str | None:
        """Lock the account's row, then the mailbox's (its account, or None if it is gone),
        before removing messages, as holds, purges and account deletions lock the account:
        a hold added meanwhile is either seen or waits for the removal to commit, and two
        removals of one blob's last two messages take turns, so the second sees the first's
        and deletes the blob (PostgreSQL reads what is committed, statement by statement).
        A mailbox never changes account, so it is read once unlocked to find which."""
        row = tx.one("SELECT account FROM mailboxes WHERE id = ?", (mailbox_id,))
        if row is None:
            return None
        self._lock_account(tx, str(row[0]))
        return self._lock_mailbox(tx, mailbox_id)

    @staticmethod
    def _held(tx: Tx, account: str) -> bool:
        return (
            tx.one("SELECT 1 FROM holds WHERE account = ? AND until > ?", (account, time.time()))
            is not None
        )

    def _remove(self, tx: Tx, mailbox_id: int, uids: Sequence[int], held: bool) -> tuple[int, int]:
        """Delete messages (a blob goes with its last message; a copy elsewhere keeps it), or
        under a hold keep them retained: invisible to the user, listed by `retained`. How
        many of the mailbox's counted messages went, and how many of them were unseen
        (retained ones are not counted), for the caller's update of the mailbox's row."""
        if not uids:
            return 0, 0
        self._drop_runs(tx, mailbox_id, uids)
        where = f"mailbox_id = ? AND {self.dialect.member('uid')}"
        params = (mailbox_id, self.dialect.values(uids))
        if held:
            hidden = tx.all(
                f"UPDATE messages SET expunged = TRUE WHERE {where} AND NOT expunged"
                " RETURNING flags, FALSE",
                params,
            )
            return self._counted(hidden)
        gone = tx.all(
            f"DELETE FROM messages WHERE {where} RETURNING flags, expunged, blob_id", params
        )
        blob_ids = sorted({int(r[2]) for r in gone})
        unused = " AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.blob_id = {})"
        tx.run(
            f"DELETE FROM summaries WHERE {self.dialect.member('blob_id')}"
            + unused.format("summaries.blob_id"),
            (self.dialect.values(blob_ids),),
        )
        tx.run(
            f"DELETE FROM blobs WHERE {self.dialect.member('id')}" + unused.format("blobs.id"),
            (self.dialect.values(blob_ids),),
        )
        return self._counted(gone)

    def _counted(self, removed: Sequence[Row]) -> tuple[int, int]:
        """Of messages removed, as (flags, expunged) rows: how many were counted (not
        retained already), and how many of those were unseen."""
        live = [self.dialect.flags(row[0]) for row in removed if not row[1]]
        return len(live), sum(SEEN not in flags for flags in live)

    @staticmethod
    def _drop_runs(tx: Tx, mailbox_id: int, uids: Sequence[int]) -> None:
        """Delete the columns of the mailbox's runs that hold any of these messages,
        retained ones too: a run names every message of its UID range, and only those."""
        rows = tx.all(
            "SELECT DISTINCT first_uid, last_uid FROM summary_columns WHERE mailbox_id = ?"
            " AND first_uid <= ? AND last_uid >= ? ORDER BY first_uid",
            (mailbox_id, max(uids), min(uids)),
        )
        runs = [(int(first), int(last)) for first, last in rows]
        firsts = [first for first, _ in runs]
        doomed = {run[0] for uid in uids if (run := run_holding(runs, firsts, uid)) is not None}
        if doomed:
            tx.run_many(
                "DELETE FROM summary_columns WHERE mailbox_id = ? AND first_uid = ?",
                [(mailbox_id, first) for first in sorted(doomed)],
            )

    def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """EXPUNGE: remove the mailbox's messages flagged \\Deleted (only those in `uids`, if
        given), or retain them if the account is under a live hold. They share one new
        MODSEQ with an 'expunge' change row each. Returns their UIDs in order.
        MailboxNotFound if the mailbox does not exist."""
        with self.engine.write() as tx:
            account = self._lock_for_removal(tx, mailbox_id)
            if account is None:
                raise MailboxNotFound(f"no mailbox id {mailbox_id}")
            deleted = [
                int(r[0])
                for r in tx.all(
                    f"SELECT uid FROM messages WHERE mailbox_id = ? AND NOT expunged"
                    f" AND {self._deleted} ORDER BY uid",
                    (mailbox_id,),
                )
            ]
            if uids is not None:
                wanted = set(uids)
                deleted = [uid for uid in deleted if uid in wanted]
            if not deleted:
                return []
            removed = self._remove(tx, mailbox_id, deleted, held=self._held(tx, account))
            modseq = self._next_modseqs(tx, mailbox_id, 1, removed)
            tx.run_many(
                "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'expunge')",
                [(mailbox_id, modseq, uid) for uid in deleted],
            )
        return deleted

    def copy(self, mailbox_id: int, uids: Sequence[int], dest_id: int) -> list[Copied]:
        """COPY: append the messages with these UIDs (absent or expunged ones are skipped) to
        `dest_id` in UID order, with their flags and dates; the copies share the ciphertext
        blob. Returns (source UID, new UID) pairs. MailboxNotFound if the destination does
        not exist; StoreError if it belongs to another account (a blob is one account's)."""
        with self.engine.write() as tx:
            # The source is locked too, so an expunge there cannot free a blob being copied.
            owners = {
                int(r[0]): str(r[1])
                for r in tx.all(
                    f"SELECT id, account FROM mailboxes WHERE {self.dialect.member('id')}"
                    f" ORDER BY id{self.dialect.for_update}",
                    (self.dialect.values(sorted({mailbox_id, dest_id})),),
                )
            }
            if dest_id not in owners:
                raise MailboxNotFound(f"no mailbox id {dest_id}")
            if mailbox_id not in owners:
                return []
            if owners[mailbox_id] != owners[dest_id]:
                raise StoreError("cannot copy messages to another account's mailbox")
            sources = [
                self._message_info(r)
                for r in tx.all(
                    _MESSAGE + " WHERE mailbox_id = ? AND NOT expunged"
                    f" AND {self.dialect.member('uid')} ORDER BY uid",
                    (mailbox_id, self.dialect.values(sorted(set(uids)))),
                )
            ]
            if not sources:
                return []
            first_uid, first_modseq = self._allocate(tx, [(dest_id, m.flags) for m in sources])[
                dest_id
            ]
            self._append(
                tx,
                [
                    (dest_id, first_uid + i, first_modseq + i, m.blob_id, m)
                    for i, m in enumerate(sources)
                ],
            )
        return [Copied(m.uid, first_uid + i) for i, m in enumerate(sources)]

    def changes_since(self, mailbox_id: int, modseq: int) -> list[Change]:
        """The mailbox's change log after `modseq`, in (MODSEQ, UID) order: what CONDSTORE,
        QRESYNC and IDLE report. An expunge's rows share its MODSEQ."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT modseq, uid, kind FROM changes WHERE mailbox_id = ? AND modseq > ?"
                " ORDER BY modseq, uid",
                (mailbox_id, modseq),
            )
        return [Change(int(r[0]), int(r[1]), r[2]) for r in rows]

    # the relay queue of sealed mail

    def due_relays(self, now: float, limit: int = 100) -> list[RelayItem]:
        """Up to `limit` queued relays due at `now`, or bounced by an operator (even while
        a failed attempt's backoff runs), the longest waiting first."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT id, dest_region, mail_from, rcpts, created, attempts,"
                " next_attempt, last_error, bounce FROM relay_queue"
                " WHERE next_attempt <= ? OR bounce IS NOT NULL ORDER BY next_attempt, id LIMIT ?",
                (now, limit),
            )
        return [
            RelayItem(
                id=int(r[0]),
                dest_region=str(r[1]),
                mail_from=str(r[2]),
                rcpts=self.dialect.strings(r[3]),
                created=float(r[4]),
                attempts=int(r[5]),
                next_attempt=float(r[6]),
                last_error=None if r[7] is None else str(r[7]),
                bounce=None if r[8] is None else str(r[8]),
            )
            for r in rows
        ]

    def relay_sealed(self, item_id: int, room: int = 0) -> bytearray | None:
        """A queued relay's sealed bytes, after `room` bytes left free (for what the relay
        signs before them), read a window at a time; None if the item is gone."""
        with self.engine.read() as tx:
            return tx.read_large("relay_queue", "sealed", item_id, room)

    def list_relays(self, limit: int = 1000, item_id: int | None = None) -> list[QueueEntry]:
        """Queued relays, due or not, oldest first (or only `item_id`), without their
        sealed bytes (for `borderline queue`)."""
        where, params = ("WHERE id = ?", (item_id,)) if item_id is not None else ("", ())
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT id, dest_region, mail_from, rcpts, LENGTH(sealed), created, attempts,"
                f" next_attempt, last_error, bounce FROM relay_queue {where} ORDER BY id LIMIT ?",
                (*params, limit),
            )
        return [
            QueueEntry(
                "relay",
                int(r[0]),
                str(r[1]),
                str(r[2]),
                self.dialect.strings(r[3]),
                *(int(r[4]), float(r[5]), int(r[6]), float(r[7])),
                *(None if v is None else str(v) for v in r[8:10]),
            )
            for r in rows
        ]

    def relay_queue_age(self) -> tuple[int, float | None]:
        """How many relays are queued, and when the oldest was queued (None: none)."""
        return self._queue_age("relay_queue")

    def outbound_queue_age(self) -> tuple[int, float | None]:
        """How many items of mail to the Internet are queued, and when the oldest was."""
        return self._queue_age("outbound_queue")

    def _queue_age(self, table: str) -> tuple[int, float | None]:
        with self.engine.read() as tx:
            row = tx.one(f"SELECT COUNT(*), MIN(created) FROM {table}")
        assert row is not None
        return int(row[0]), None if row[1] is None else float(row[1])

    def retry_relay(self, item_id: int, now: float) -> bool:
        """Make a queued relay due at `now`, whatever its backoff said (an operator's "retry
        now"); False if the item is gone."""
        return self._change_relay(item_id, "next_attempt = ?", (now,))

    def bounce_relay(self, item_id: int, reason: str, now: float) -> bool:
        """Give up on a queued relay (an operator's "bounce"): on its next pass the relay
        worker sends the sender a failure report with `reason` instead of relaying it, and
        drops it. False if the item is gone."""
        return self._change_relay(item_id, "bounce = ?, next_attempt = ?", (reason, now))

    def _change_relay(self, item_id: int, assignments: str, values: tuple[object, ...]) -> bool:
        with self.engine.write() as tx:
            row = tx.one(
                f"UPDATE relay_queue SET {assignments} WHERE id = ? RETURNING id",
                (*values, item_id),
            )
        return row is not None

    def relay_done(self, item_ids: Sequence[int]) -> None:
        """Remove relayed (or bounced) items from the queue, in one commit. Ids already gone
        are ignored; queue ids are never reused, so none names another item."""
        if not item_ids:
            return
        with self.engine.write() as tx:
            tx.run(
                f"DELETE FROM relay_queue WHERE {self.dialect.member('id')}",
                (self.dialect.values(item_ids),),
            )

    def relay_failed(self, item_id: int, error: str, next_attempt: float) -> None:
        """Count a failed attempt, keep its error and retry the item at `next_attempt`."""
        with self.engine.write() as tx:
            tx.run(
                "UPDATE relay_queue SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
                " WHERE id = ?",
                (error, next_attempt, item_id),
            )

    def queued_relays(self) -> int:
        """How many relays are queued, due or not."""
        with self.engine.read() as tx:
            row = tx.one("SELECT COUNT(*) FROM relay_queue")
        return 0 if row is None else int(row[0])

    # the outbound queue of mail to the Internet

    def due_outbound(self, now: float, limit: int = 100) -> list[OutboundItem]:
        """Up to `limit` queued items due at `now`, the longest waiting first, without their
        blobs."""
        with self.engine.read() as tx:
            rows = tx.all(
                f"SELECT {_OUTBOUND_COLUMNS} FROM outbound_queue WHERE next_attempt <= ?"
                " ORDER BY next_attempt, id LIMIT ?",
                (now, limit),
            )
        return [self._outbound_item(r) for r in rows]

    def list_outbound(self, limit: int = 1000) -> list[OutboundItem]:
        """Queued mail to the Internet, due or not, oldest first (for `borderline queue`)."""
        with self.engine.read() as tx:
            rows = tx.all(
                f"SELECT {_OUTBOUND_COLUMNS} FROM outbound_queue ORDER BY id LIMIT ?", (limit,)
            )
        return [self._outbound_item(r) for r in rows]

    def outbound_item(self, item_id: int) -> OutboundItem | None:
        """One queued item (without its blob), or None if it is gone."""
        with self.engine.read() as tx:
            row = tx.one(f"SELECT {_OUTBOUND_COLUMNS} FROM outbound_queue WHERE id = ?", (item_id,))
        return None if row is None else self._outbound_item(row)

    def retry_outbound(self, item_id: int | None = None, now: float | None = None) -> int:
        """Make an item due now, or every item (None: `postqueue -f`), whatever their
        backoff said (an operator's "retry now"); the worker takes them on its next pass.
        How many there were (0: the item is gone)."""
        when = time.time() if now is None else now
        with self.engine.write() as tx:
            which = "" if item_id is None else " WHERE id = ?"
            params = () if item_id is None else (item_id,)
            found = tx.one(f"SELECT COUNT(*) FROM outbound_queue{which}", params)
            tx.run(f"UPDATE outbound_queue SET next_attempt = ?{which}", (when, *params))
        return 0 if found is None else int(found[0])

    def bounce_outbound(self, item_id: int, reason: str, now: float | None = None) -> bool:
        """Give up on an item (an operator's "bounce"): on its next pass, due now, the worker
        sends the sender a failure report with `reason` for every recipient left, without
        trying again, and drops the item. False if the item is gone."""
        when = time.time() if now is None else now
        with self.engine.write() as tx:
            found = tx.one(
                f"SELECT id FROM outbound_queue WHERE id = ?{self.dialect.for_update}", (item_id,)
            )
            tx.run(
                "UPDATE outbound_queue SET bounce = ?, next_attempt = ? WHERE id = ?",
                (reason, when, item_id),
            )
        return found is not None

    def _outbound_item(self, r: Row) -> OutboundItem:
        return OutboundItem(
            id=int(r[0]),
            domain=str(r[1]),
            mail_from=str(r[2]),
            rcpts=self.dialect.strings(r[3]),
            size=int(r[4]),
            created=float(r[5]),
            attempts=int(r[6]),
            next_attempt=float(r[7]),
            last_error=None if r[8] is None else str(r[8]),
            delay_notified=bool(r[9]),
            bounce=None if r[10] is None else str(r[10]),
        )

    def outbound_blob(self, item_id: int) -> bytes | None:
        """A queued item's encrypted message, or None if the item is gone."""
        with self.engine.read() as tx:
            row = tx.one("SELECT blob FROM outbound_queue WHERE id = ?", (item_id,))
        return None if row is None else bytes(row[0])

    def outbound_done(self, item_ids: Sequence[int]) -> None:
        """Remove items every recipient of which was delivered or bounced, in one commit.
        Ids already gone are ignored; ids are never reused, so none names another item."""
        if not item_ids:
            return
        with self.engine.write() as tx:
            tx.run(
                f"DELETE FROM outbound_queue WHERE {self.dialect.member('id')}",
                (self.dialect.values(item_ids),),
            )

    def outbound_retry(
        self,
        item_id: int,
        rcpts: Sequence[str],
        error: str,
        next_attempt: float,
        delay_notified: bool,
    ) -> None:
        """Count a failed attempt: only `rcpts` (those neither delivered nor bounced) are
        tried again, at `next_attempt`; keep the error and whether the sender was told of
        the delay."""
        with self.engine.write() as tx:
            tx.run(
                "UPDATE outbound_queue SET rcpts = ?, attempts = attempts + 1, last_error = ?,"
                " next_attempt = ?, delay_notified = ? WHERE id = ?",
                (self.dialect.values(rcpts), error, next_attempt, delay_notified, item_id),
            )

    def queued_outbound(self) -> int:
        """How many items of mail to the Internet are queued, due or not."""
        with self.engine.read() as tx:
            row = tx.one("SELECT COUNT(*) FROM outbound_queue")
        return 0 if row is None else int(row[0])

    # preservation holds

    def add_hold(self, account: str, reference: str, until: float) -> int:
        """Preserve the account's mail until `until` (a Unix time); the hold's id, never one
        another hold had. While it is live, expunged messages are retained and mailboxes
        holding messages cannot be deleted."""
        with self.engine.write() as tx:
            if not self._lock_account(tx, account.lower()):
                raise StoreError(f"no account {account.lower()} to hold")
            row = tx.one(
                "INSERT INTO holds (account, reference, until) VALUES (?, ?, ?) RETURNING id",
                (account.lower(), reference, until),
            )
        assert row is not None
        return int(row[0])

    def _live_hold_until(self, tx: Tx, hold_id: int) -> float:
        row = tx.one(f"SELECT until FROM holds WHERE id = ?{self.dialect.for_update}", (hold_id,))
        if row is None or float(row[0]) <= time.time():
            raise StoreError(f"no live hold {hold_id}")
        return float(row[0])

    def extend_hold(self, hold_id: int, until: float) -> None:
        """Make a live hold last until `until`. StoreError if there is no such live hold or
        `until` is not later than its current end (a hold is never shortened this way)."""
        with self.engine.write() as tx:
            held = tx.one("SELECT account FROM holds WHERE id = ?", (hold_id,))
            if held is not None:
                self._lock_account(tx, str(held[0]))  # before a purge decides it lapsed
            current = self._live_hold_until(tx, hold_id)
            if until <= current:
                raise StoreError(
                    f"hold {hold_id} already lasts until {current}, not before {until}"
                )
            tx.run("UPDATE holds SET until = ? WHERE id = ?", (until, hold_id))

    def release_hold(self, hold_id: int) -> None:
        """End a live hold now: it lapses as if its time had come (it stays on record, and
        `holds` for an earlier time still lists it). StoreError if there is no such live hold."""
        with self.engine.write() as tx:
            self._live_hold_until(tx, hold_id)
            tx.run("UPDATE holds SET until = ? WHERE id = ?", (time.time(), hold_id))

    def holds(self, now: float | None = None) -> list[Hold]:
        """The holds live at `now` (default: now), in id order."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT id, account, reference, until FROM holds WHERE until > ? ORDER BY id",
                (time.time() if now is None else now,),
            )
        return [Hold(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]

    def purge_lapsed_holds(self, since: float) -> int:
        """Delete what holds retained for the accounts whose holds lapsed after `since` (a
        Unix time) and that no live hold covers now: a hold preserves mail while it lasts,
        and what the user expunged meanwhile goes when it ends, as it would have without
        it. One transaction per account, under its row's lock (so a hold added meanwhile
        wins); how many messages went."""
        with self.engine.read() as tx:
            accounts = [
                str(row[0])
                for row in tx.all(
                    "SELECT DISTINCT account FROM holds WHERE until > ? AND until <= ?"
                    " ORDER BY account",
                    (since, time.time()),
                )
            ]
        purged = 0
        for account in accounts:
            with self.engine.write() as tx:
                if not self._lock_account(tx, account) or self._held(tx, account):
                    continue  # deleted (its mail with it), or preserved again
                # The account's mailboxes too, in id order, as an expunge locks one: so a blob
                # whose last two messages they delete at once is not left behind by both.
                tx.all(
                    "SELECT id FROM mailboxes WHERE account = ?"
                    f" ORDER BY id{self.dialect.for_update}",
                    (account,),
                )
                retained: dict[int, list[int]] = {}
                for mailbox_id, uid in tx.all(
                    "SELECT m.mailbox_id, m.uid FROM messages m"
                    " JOIN mailboxes b ON b.id = m.mailbox_id"
                    " WHERE b.account = ? AND m.expunged ORDER BY m.mailbox_id, m.uid",
                    (account,),
                ):
                    retained.setdefault(int(mailbox_id), []).append(int(uid))
                for mailbox_id, uids in retained.items():
                    self._remove(tx, mailbox_id, uids, held=False)
                    purged += len(uids)
        return purged

    def _lock_account(self, tx: Tx, account: str) -> bool:
        """Lock the account's row for the transaction: holds are added, extended and purged,
        and accounts deleted, under it, so one waits for the other (PostgreSQL reads what
        is committed, statement by statement). Whether the account exists."""
        row = tx.one(
            f"SELECT 1 FROM accounts WHERE address = ?{self.dialect.for_update}", (account,)
        )
        return row is not None

    def retained(self, account: str) -> list[MessageInfo]:
        """Messages the account expunged that a hold kept, oldest first."""
        with self.engine.read() as tx:
            rows = tx.all(
                "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id"
                " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE b.account = ? AND m.expunged ORDER BY m.id",
                (account.lower(),),
            )
        return [self._message_info(row) for row in rows]

    def close(self) -> None:
        """Close every connection the store opened, in every thread."""
        self.engine.close()
