"""The embedded store: one SQLite database (WAL, synchronous=FULL) per region."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from borderline.durable_sqlite import open_durable
from borderline.store.base import (
    SPECIAL_USE_MAILBOXES,
    Delivery,
    Hold,
    MailboxInfo,
    MailboxNotFound,
    MessageInfo,
    OutboundRelay,
    RelayItem,
    StoreError,
    apply_flag_mode,
    check_flag_mode,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(address),
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    subscribed INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account, name)
);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    blob_id INTEGER NOT NULL REFERENCES blobs(id),
    expunged INTEGER NOT NULL DEFAULT 0,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX IF NOT EXISTS messages_by_blob ON messages (blob_id);
CREATE TABLE IF NOT EXISTS changes (
    mailbox_id INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_mailbox ON changes (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS relay_queue (
    id INTEGER PRIMARY KEY,
    dest_region TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpts TEXT NOT NULL,
    sealed BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS relay_received (
    relay_id TEXT NOT NULL,
    account TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (relay_id, account)
);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    reference TEXT NOT NULL,
    until REAL NOT NULL
);
"""


def _flags(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _flag_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


class SqliteMailStore:
    """Writes go through one connection under a lock (SQLite has one writer anyway);
    reads use a connection per thread so IMAP sessions don't queue behind ingest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._writer = self._connect()
        with self._writer:
            self._writer.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return open_durable(self.path, autocommit=True)

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            connection = self._writer
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            else:
                connection.execute("COMMIT")

    # accounts

    def create_account(self, address: str, password_hash: str) -> None:
        address = address.lower()
        with self._transaction() as db:
            exists = db.execute("SELECT 1 FROM accounts WHERE address = ?", (address,)).fetchone()
            if exists:
                raise StoreError(f"account {address} already exists")
            db.execute(
                "INSERT INTO accounts (address, password_hash, created) VALUES (?, ?, ?)",
                (address, password_hash, time.time()),
            )
            for name, special_use in SPECIAL_USE_MAILBOXES:
                self._insert_mailbox(db, address, name, special_use)

    def password_hash(self, address: str) -> str | None:
        row = (
            self._reader()
            .execute("SELECT password_hash FROM accounts WHERE address = ?", (address.lower(),))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def set_password_hash(self, address: str, password_hash: str) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ?",
                (password_hash, address.lower()),
            )
            if cursor.rowcount == 0:
                raise StoreError(f"no account {address}")

    def accounts(self) -> list[str]:
        rows = self._reader().execute("SELECT address FROM accounts ORDER BY address").fetchall()
        return [str(row[0]) for row in rows]

    # mailboxes

    @staticmethod
    def _insert_mailbox(
        db: sqlite3.Connection, account: str, name: str, special_use: str | None
    ) -> int:
        # UIDVALIDITY must never repeat for a name: time-based, and above any earlier value.
        row = db.execute("SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes").fetchone()
        uidvalidity = max(int(time.time()), int(row[0]) + 1)
        cursor = db.execute(
            "INSERT INTO mailboxes (account, name, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
            (account, name, uidvalidity, special_use),
        )
        return int(cursor.lastrowid or 0)

    def create_mailbox(
        self, account: str, name: str, special_use: str | None = None
    ) -> MailboxInfo:
        account = account.lower()
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM mailboxes WHERE account = ? AND name = ?", (account, name)
            ).fetchone():
                raise StoreError(f"mailbox {name!r} already exists")
            self._insert_mailbox(db, account, name, special_use)
        return self.mailbox(account, name)

    _MAILBOX_COLUMNS = (
        "SELECT m.id, m.account, m.name, m.uidvalidity, m.uidnext, m.highestmodseq,"
        " m.special_use, m.subscribed,"
        " (SELECT COUNT(*) FROM messages WHERE mailbox_id = m.id AND expunged = 0),"
        " (SELECT COUNT(*) FROM messages WHERE mailbox_id = m.id AND expunged = 0"
        "  AND (' ' || flags || ' ') NOT LIKE '% \\Seen %')"
        " FROM mailboxes m"
    )

    @staticmethod
    def _mailbox_info(row: Any) -> MailboxInfo:
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
        )

    def mailboxes(self, account: str) -> list[MailboxInfo]:
        rows = (
            self._reader()
            .execute(
                self._MAILBOX_COLUMNS + " WHERE m.account = ? ORDER BY m.name", (account.lower(),)
            )
            .fetchall()
        )
        return [self._mailbox_info(row) for row in rows]

    def mailbox(self, account: str, name: str) -> MailboxInfo:
        row = (
            self._reader()
            .execute(
                self._MAILBOX_COLUMNS + " WHERE m.account = ? AND m.name = ?",
                (account.lower(), name),
            )
            .fetchone()
        )
        if row is None:
            raise MailboxNotFound(f"no mailbox {name!r}")
        return self._mailbox_info(row)

    def rename_mailbox(self, account: str, old: str, new: str) -> None:
        account = account.lower()
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM mailboxes WHERE account = ? AND name = ?", (account, new)
            ).fetchone():
                raise StoreError(f"mailbox {new!r} already exists")
            cursor = db.execute(
                "UPDATE mailboxes SET name = ? WHERE account = ? AND name = ?", (new, account, old)
            )
            if cursor.rowcount == 0:
                raise MailboxNotFound(f"no mailbox {old!r}")
            prefix = old + "/"
            db.execute(
                "UPDATE mailboxes SET name = ? || substr(name, ?)"
                " WHERE account = ? AND substr(name, 1, ?) = ?",
                (new + "/", len(prefix) + 1, account, len(prefix), prefix),
            )

    def delete_mailbox(self, account: str, name: str) -> None:
        account = account.lower()
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM mailboxes WHERE account = ? AND name = ?", (account, name)
            ).fetchone()
            if row is None:
                raise MailboxNotFound(f"no mailbox {name!r}")
            mailbox_id = int(row[0])
            # Retained (expunged under a hold) messages count too: they are still held.
            uids = [
                int(r[0])
                for r in db.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))
            ]
            if uids and self._held(db, account):
                raise StoreError(f"mailbox {name!r} holds messages under a preservation hold")
            self._remove_messages(db, mailbox_id, uids, account)
            db.execute("DELETE FROM changes WHERE mailbox_id = ?", (mailbox_id,))
            db.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))

    def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE mailboxes SET subscribed = ? WHERE account = ? AND name = ?",
                (int(subscribed), account.lower(), name),
            )
            if cursor.rowcount == 0:
                raise MailboxNotFound(f"no mailbox {name!r}")

    # messages

    @staticmethod
    def _next_modseq(db: sqlite3.Connection, mailbox_id: int) -> int:
        row = db.execute(
            "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
            " RETURNING highestmodseq",
            (mailbox_id,),
        ).fetchone()
        return int(row[0])

    def _append(
        self,
        db: sqlite3.Connection,
        mailbox_id: int,
        blob_id: int,
        flags: frozenset[str],
        internal_date: float,
        size: int,
    ) -> int:
        row = db.execute(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
            " WHERE id = ? RETURNING uidnext - 1, highestmodseq",
            (mailbox_id,),
        ).fetchone()
        uid, modseq = int(row[0]), int(row[1])
        db.execute(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, internal_date, size, blob_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (mailbox_id, uid, modseq, _flag_text(flags), internal_date, size, blob_id),
        )
        db.execute(
            "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'append')",
            (mailbox_id, modseq, uid),
        )
        return uid

    def deliver(
        self, deliveries: Sequence[Delivery], relays: Sequence[OutboundRelay] = ()
    ) -> list[tuple[int, int]]:
        """Commit local deliveries and queued relays together: all or nothing, one fsync."""
        placed: list[tuple[int, int]] = []
        now = time.time()
        with self._transaction() as db:
            for delivery in deliveries:
                account = delivery.account.lower()
                if delivery.relay_id is not None and not self._first_receipt(
                    db, delivery.relay_id, account, now
                ):
                    continue
                row = db.execute(
                    "SELECT id FROM mailboxes WHERE account = ? AND name = ?",
                    (account, delivery.mailbox),
                ).fetchone()
                if row is None:
                    raise MailboxNotFound(f"no mailbox {delivery.mailbox!r} for {account}")
                mailbox_id = int(row[0])
                blob_id = int(
                    db.execute(
                        "INSERT INTO blobs (account, data) VALUES (?, ?)", (account, delivery.blob)
                    ).lastrowid
                    or 0
                )
                uid = self._append(
                    db, mailbox_id, blob_id, delivery.flags, delivery.internal_date, delivery.size
                )
                placed.append((mailbox_id, uid))
            for relay in relays:
                db.execute(
                    "INSERT INTO relay_queue (dest_region, mail_from, rcpts, sealed, created,"
                    " next_attempt) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        relay.dest_region,
                        relay.mail_from,
                        json.dumps(list(relay.rcpts)),
                        relay.sealed,
                        now,
                        now,
                    ),
                )
        return placed

    @staticmethod
    def _first_receipt(db: sqlite3.Connection, relay_id: str, account: str, now: float) -> bool:
        """Record a relayed message's arrival; False if it was stored before (a retry)."""
        cursor = db.execute(
            "INSERT OR IGNORE INTO relay_received (relay_id, account, received) VALUES (?, ?, ?)",
            (relay_id, account, now),
        )
        return cursor.rowcount == 1

    def messages(self, mailbox_id: int) -> list[MessageInfo]:
        rows = (
            self._reader()
            .execute(
                "SELECT uid, modseq, flags, internal_date, size, blob_id FROM messages"
                " WHERE mailbox_id = ? AND expunged = 0 ORDER BY uid",
                (mailbox_id,),
            )
            .fetchall()
        )
        return [self._message_info(row) for row in rows]

    @staticmethod
    def _message_info(row: Any) -> MessageInfo:
        return MessageInfo(
            uid=int(row[0]),
            modseq=int(row[1]),
            flags=_flags(str(row[2])),
            internal_date=float(row[3]),
            size=int(row[4]),
            blob_id=int(row[5]),
        )

    def blob(self, blob_id: int) -> bytes:
        row = self._reader().execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        if row is None:
            raise StoreError(f"no blob {blob_id}")
        return bytes(row[0])

    def set_flags(
        self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> list[MessageInfo]:
        check_flag_mode(mode)
        changed: list[MessageInfo] = []
        with self._transaction() as db:
            for uid in uids:
                row = db.execute(
                    "SELECT flags FROM messages WHERE mailbox_id = ? AND uid = ? AND expunged = 0",
                    (mailbox_id, uid),
                ).fetchone()
                if row is None:
                    continue
                old = _flags(str(row[0]))
                new = apply_flag_mode(old, flags, mode)
                if new == old:
                    continue
                modseq = self._next_modseq(db, mailbox_id)
                db.execute(
                    "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                    (_flag_text(new), modseq, mailbox_id, uid),
                )
                db.execute(
                    "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'flags')",
                    (mailbox_id, modseq, uid),
                )
                info = db.execute(
                    "SELECT uid, modseq, flags, internal_date, size, blob_id FROM messages"
                    " WHERE mailbox_id = ? AND uid = ?",
                    (mailbox_id, uid),
                ).fetchone()
                changed.append(self._message_info(info))
        return changed

    @staticmethod
    def _held(db: sqlite3.Connection, account: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM holds WHERE account = ? AND until > ?", (account, time.time())
            ).fetchone()
            is not None
        )

    def _remove_messages(
        self, db: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], account: str
    ) -> None:
        """Delete messages, or under a hold keep them retained (invisible to IMAP)."""
        held = self._held(db, account)
        for uid in uids:
            if held:
                db.execute(
                    "UPDATE messages SET expunged = 1 WHERE mailbox_id = ? AND uid = ?",
                    (mailbox_id, uid),
                )
                continue
            row = db.execute(
                "DELETE FROM messages WHERE mailbox_id = ? AND uid = ? RETURNING blob_id",
                (mailbox_id, uid),
            ).fetchone()
            if (
                row is not None
                and not db.execute("SELECT 1 FROM messages WHERE blob_id = ?", (row[0],)).fetchone()
            ):
                db.execute("DELETE FROM blobs WHERE id = ?", (row[0],))

    def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove \\Deleted messages (only those in `uids`, if given); returns their UIDs."""
        with self._transaction() as db:
            row = db.execute("SELECT account FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise MailboxNotFound(f"no mailbox id {mailbox_id}")
            deleted = [
                int(r[0])
                for r in db.execute(
                    "SELECT uid FROM messages WHERE mailbox_id = ? AND expunged = 0"
                    " AND (' ' || flags || ' ') LIKE '% \\Deleted %' ORDER BY uid",
                    (mailbox_id,),
                )
            ]
            if uids is not None:
                wanted = set(uids)
                deleted = [uid for uid in deleted if uid in wanted]
            if not deleted:
                return []
            self._remove_messages(db, mailbox_id, deleted, str(row[0]))
            modseq = self._next_modseq(db, mailbox_id)
            db.executemany(
                "INSERT INTO changes (mailbox_id, modseq, uid, kind) VALUES (?, ?, ?, 'expunge')",
                [(mailbox_id, modseq, uid) for uid in deleted],
            )
        return deleted

    def copy(self, mailbox_id: int, uids: Sequence[int], dest_id: int) -> list[tuple[int, int]]:
        """Copy messages; the copy shares the ciphertext blob. Returns (old uid, new uid)."""
        mapping: list[tuple[int, int]] = []
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM mailboxes WHERE id = ?", (dest_id,)).fetchone():
                raise MailboxNotFound(f"no mailbox id {dest_id}")
            for uid in sorted(set(uids)):
                row = db.execute(
                    "SELECT blob_id, flags, internal_date, size FROM messages"
                    " WHERE mailbox_id = ? AND uid = ? AND expunged = 0",
                    (mailbox_id, uid),
                ).fetchone()
                if row is None:
                    continue
                new_uid = self._append(
                    db, dest_id, int(row[0]), _flags(str(row[1])), float(row[2]), int(row[3])
                )
                mapping.append((uid, new_uid))
        return mapping

    def changes_since(self, mailbox_id: int, modseq: int) -> list[tuple[int, int, str]]:
        rows = (
            self._reader()
            .execute(
                "SELECT modseq, uid, kind FROM changes WHERE mailbox_id = ? AND modseq > ?"
                " ORDER BY modseq, uid",
                (mailbox_id, modseq),
            )
            .fetchall()
        )
        return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]

    # relay queue

    def due_relays(self, now: float, limit: int = 100) -> list[RelayItem]:
        rows = (
            self._reader()
            .execute(
                "SELECT id, dest_region, mail_from, rcpts, sealed, created, attempts,"
                " next_attempt, last_error FROM relay_queue WHERE next_attempt <= ?"
                " ORDER BY next_attempt LIMIT ?",
                (now, limit),
            )
            .fetchall()
        )
        return [
            RelayItem(
                id=int(r[0]),
                dest_region=str(r[1]),
                mail_from=str(r[2]),
                rcpts=tuple(json.loads(r[3])),
                sealed=bytes(r[4]),
                created=float(r[5]),
                attempts=int(r[6]),
                next_attempt=float(r[7]),
                last_error=None if r[8] is None else str(r[8]),
            )
            for r in rows
        ]

    def relay_done(self, item_ids: Sequence[int]) -> None:
        """Items relayed (or bounced) in a pass, removed in one commit."""
        with self._transaction() as db:
            db.executemany("DELETE FROM relay_queue WHERE id = ?", [(i,) for i in item_ids])

    def relay_failed(self, item_id: int, error: str, next_attempt: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE relay_queue SET attempts = attempts + 1, last_error = ?, next_attempt = ?"
                " WHERE id = ?",
                (error, next_attempt, item_id),
            )

    def queued_relays(self) -> int:
        row = self._reader().execute("SELECT COUNT(*) FROM relay_queue").fetchone()
        return int(row[0])

    # preservation holds

    def add_hold(self, account: str, reference: str, until: float) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO holds (account, reference, until) VALUES (?, ?, ?)",
                (account.lower(), reference, until),
            )
            return int(cursor.lastrowid or 0)

    def extend_hold(self, hold_id: int, until: float) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE holds SET until = ? WHERE id = ? AND until > ? AND until < ?",
                (until, hold_id, time.time(), until),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"no live hold {hold_id} that ends before {until}")

    def release_hold(self, hold_id: int) -> None:
        with self._transaction() as db:
            now = time.time()
            cursor = db.execute(
                "UPDATE holds SET until = ? WHERE id = ? AND until > ?", (now, hold_id, now)
            )
            if cursor.rowcount != 1:
                raise StoreError(f"no live hold {hold_id}")

    def holds(self, now: float | None = None) -> list[Hold]:
        rows = (
            self._reader()
            .execute(
                "SELECT id, account, reference, until FROM holds WHERE until > ? ORDER BY id",
                (time.time() if now is None else now,),
            )
            .fetchall()
        )
        return [Hold(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]

    def retained(self, account: str) -> list[MessageInfo]:
        """Messages expunged by the user but kept for a hold."""
        rows = (
            self._reader()
            .execute(
                "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size, m.blob_id"
                " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE b.account = ? AND m.expunged = 1 ORDER BY m.id",
                (account.lower(),),
            )
            .fetchall()
        )
        return [self._message_info(row) for row in rows]

    def close(self) -> None:
        self._writer.close()
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
