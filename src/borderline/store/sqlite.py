"""The embedded engine: one SQLite database per region (WAL, synchronous=FULL)."""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from borderline.durable_sqlite import BUSY_TIMEOUT_MS, PRIVATE, open_durable
from borderline.store.base import StoreError
from borderline.store.engine import Conflict, Dialect, Row, Tx
from borderline.store.mail import MailStore
from borderline.store.schema import (
    INDEXES,
    LARGE_LAST,
    RELAY_BOUNCE,
    WITH_IDS,
    add_first_recent_uid,
    add_mailbox_counts,
    add_table,
    create_table,
    migrate,
    replace_summary_packs,
    seed_clock,
)

log = logging.getLogger(__name__)

# A checkpoint copies the WAL into the database file and fsyncs it. Run by SQLite inside
# the commit that crossed its mark, it stalled that commit and every message waiting on it
# (100 - 350 ms for a 40 MiB mark at 100 KB a message, bench/RESULTS.md). A thread of its
# own does it instead (_Checkpointer), every CHECKPOINT_SECONDS while mail is written. Its
# checkpoints never wait for readers or writers (a checkpoint that waits for readers holds
# up every writer meanwhile): PASSIVE, then, once one has caught up, a TRUNCATE that gives
# up at once if anyone is in the way. The WAL starts over from its beginning only after a
# checkpoint that caught up before the next write and with no reader holding it back,
# which under a steady load may not happen for a while: a writer that finds the WAL file
# grown past WAL_LIMIT bytes checkpoints itself, at most once for each WAL_LIMIT it grows.
# A reader that never ends (an open transaction in a shell, a backup) keeps the WAL from
# starting over at all, as with SQLite's own checkpoints; it does once the reader ends.
CHECKPOINT_SECONDS = 0.25
WAL_LIMIT = 64 * 1024 * 1024
# Connections read the file through a memory map of up to this much (SQLite's largest):
# a message's ciphertext is a chain of 4 KiB overflow pages, one pread each without it,
# which cost half of reading a mailbox (bench/RESULTS.md). The file never shrinks (no
# auto_vacuum), so the map stays valid; an I/O error under it is a SIGBUS, not an error.
MMAP_SIZE = 2**31 - 2**16
WRITER_POLL = 0.0005  # seconds between tries of another process's writer lock
LARGE_WINDOW = 256 * 1024  # of a message's ciphertext read at a time


@functools.lru_cache(maxsize=1024)
def _flag_set(raw: str) -> frozenset[str]:
    """One set per distinct flag string: a mailbox's thousands of messages share a few."""
    return frozenset(raw.split())


class SqliteDialect(Dialect):
    """Flags are a space-separated string (IMAP flags are atoms); lists are JSON arrays."""

    name = "sqlite"
    for_update = ""  # a write transaction holds the database's write lock
    ddl_types = {  # noqa: RUF012 - read-only
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bytes": "BLOB",
        "strings": "TEXT",
        "no_strings": "''",
    }

    def member(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def values(self, items: Iterable[Any]) -> Any:
        return json.dumps(list(items))

    def strings(self, raw: Any) -> tuple[str, ...]:
        return tuple(json.loads(raw))

    def has_flag(self, flag: str) -> str:
        return f"instr(' ' || flags || ' ', ' {flag} ') > 0"

    def flags_param(self, flags: frozenset[str]) -> Any:
        return " ".join(sorted(flags))

    def flags(self, raw: Any) -> frozenset[str]:
        return _flag_set(str(raw))

    def table_exists(self) -> str:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"


SQLITE = SqliteDialect()


class _Statements:
    """Tx over one sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._db.execute(sql, params).fetchone()
        return row

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(sql, params)

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._db.executemany(sql, rows)

    def one_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        return [self._db.execute(sql, row).fetchone() for row in rows]

    def insert_large(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> list[int]:
        """Reserve each value's room with zeroblob() and write the ciphertext into it:
        binding a big value would make SQLite copy it twice more (the bound value, then the
        record) and keep the last one with the statement."""
        places = ", ".join(["?"] * (len(columns) - 1) + ["zeroblob(?)"])
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({places}) RETURNING id"
        ids = []
        for *values, data in rows:
            row_id = int(self._db.execute(sql, (*values, len(data))).fetchone()[0])
            with self._db.blobopen(table, columns[-1], row_id) as blob:
                blob.write(data)
            ids.append(row_id)
        return ids

    def read_large(self, table: str, column: str, row_id: int, room: int) -> bytearray | None:
        """Through `Connection.blobopen`: a SELECT would make SQLite build the whole value,
        then Python copy it into bytes."""
        try:
            blob = self._db.blobopen(table, column, row_id, readonly=True)
        except sqlite3.OperationalError:  # no such row
            return None
        with blob:
            buffer = bytearray(room + len(blob))
            for start in range(room, len(buffer), LARGE_WINDOW):
                buffer[start : start + LARGE_WINDOW] = blob.read(LARGE_WINDOW)
        return buffer


def _ids_never_reused(tx: Tx) -> None:
    """Version 2: rebuild the tables with ids as AUTOINCREMENT (SQLite otherwise hands out a
    deleted top row's id again), keeping every row and id; start the UIDVALIDITY clock."""
    for table in WITH_IDS:
        _rebuilt(tx, table)
    create_table(tx, SQLITE, "uidvalidity_clock")
    seed_clock(tx)
    if tx.all("PRAGMA foreign_key_check"):
        raise StoreError("the migrated tables break a foreign key; the migration was rolled back")


def _relay_bounce(tx: Tx) -> None:
    """Version 4: the relay queue's `bounce`, unless version 2's rebuild of the queue, from
    the latest schema, already made it."""
    if not any(r[1] == "bounce" for r in tx.all("PRAGMA table_info(relay_queue)")):
        tx.run(f"ALTER TABLE relay_queue ADD COLUMN {RELAY_BOUNCE}")


def _rebuilt(tx: Tx, table: str) -> None:
    """`table` made again at the latest schema with every row, and with its AUTOINCREMENT
    counter where it was: ids of rows already deleted are never handed out again."""
    columns = ", ".join(str(r[1]) for r in tx.all(f"PRAGMA table_info({table})"))
    counter = None  # SQLite makes its table of counters with the first AUTOINCREMENT table
    if tx.one(SQLITE.table_exists(), ("sqlite_sequence",)) is not None:
        counter = tx.one("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
    create_table(tx, SQLITE, table, as_name=f"{table}_new")
    tx.run(f"INSERT INTO {table}_new ({columns}) SELECT {columns} FROM {table}")
    tx.run(f"DROP TABLE {table}")
    tx.run(f"ALTER TABLE {table}_new RENAME TO {table}")
    for index in INDEXES.get(table, ()):
        tx.run(index)
    if counter is not None:
        tx.run("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        tx.run("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, counter[0]))


def _large_values_last(tx: Tx) -> None:
    """Version 8: the queues rebuilt with their message column last (schema.py)."""
    for table in LARGE_LAST:
        _rebuilt(tx, table)


def _mailbox_columns(tx: Tx) -> set[str]:
    """What `mailboxes` has: version 2's rebuild made it at the latest schema."""
    return {str(r[1]) for r in tx.all("PRAGMA table_info(mailboxes)")}


def _first_recent_uid(tx: Tx) -> None:
    add_first_recent_uid(tx, add_column="first_recent_uid" not in _mailbox_columns(tx))


MIGRATIONS = {
    2: _ids_never_reused,
    3: lambda tx: add_table(tx, SQLITE, "outbound_queue"),
    4: _relay_bounce,
    5: _first_recent_uid,
    6: lambda tx: add_table(tx, SQLITE, "lost_subscriptions"),
    7: lambda tx: add_table(tx, SQLITE, "summaries"),
    8: _large_values_last,
    9: lambda tx: None,  # summary_packs, which 10 replaces
    10: lambda tx: replace_summary_packs(tx, SQLITE),
    11: lambda tx: add_mailbox_counts(tx, SQLITE, "message_count" not in _mailbox_columns(tx)),
}


class SqliteEngine:
    """Writes go through one connection under a lock (SQLite has one writer anyway); reads
    use a connection per thread, so IMAP sessions don't queue behind ingest. The files are
    the owner's only (durable_sqlite).

    Writers in other processes (ingest workers) queue on a file lock beside the database,
    tried every half millisecond. Waiting on SQLite's own lock instead, a writer sleeps 1,
    2, 5, 10... ms between tries, time in which nobody writes. A writer held up past the
    busy timeout, by this process or another, fails with StoreError as before."""

    dialect: Dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self._checkpoint_past = WAL_LIMIT  # the WAL size past which a writer checkpoints
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            self._writers = os.open(
                path.with_name(path.name + "-writer"),
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                PRIVATE,
            )
        except OSError as exc:
            raise StoreError(f"SQLite store {path}: {exc}") from None
        self._checkpointer: _Checkpointer | None = None
        try:
            with self._errors():
                self._writer = self._connect()
                self._migrate()
                self._checkpointer = _Checkpointer(self._connect(), self._wal)
        except BaseException:
            self.close()
            raise
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        connection = open_durable(self.path, autocommit=True)
        connection.execute("PRAGMA wal_autocheckpoint=0")  # see CHECKPOINT_SECONDS
        connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")  # when it starts over
        connection.execute(f"PRAGMA mmap_size={MMAP_SIZE}")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _migrate(self) -> None:
        # Rebuilding a table needs foreign keys off, which SQLite only allows outside a
        # transaction; BEGIN IMMEDIATE makes processes opening the file at once take turns.
        self._writer.execute("PRAGMA foreign_keys=OFF")
        try:
            with self.write() as tx:
                migrate(tx, SQLITE, MIGRATIONS, f"SQLite store {self.path}")
        finally:
            self._writer.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from None
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from None

    @contextmanager
    def write(self) -> Iterator[Tx]:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise self._busy()
        try:
            self._lock_writers(deadline)
            try:
                with self._errors():
                    db = self._writer
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        yield _Statements(db)
                        db.execute("COMMIT")
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
                self._after_commit(db)
            finally:
                fcntl.flock(self._writers, fcntl.LOCK_UN)
        finally:
            self._write_lock.release()

    def _after_commit(self, db: sqlite3.Connection) -> None:
        """The mail is committed: wake the checkpointer, and checkpoint here if the WAL file
        has grown WAL_LIMIT past where this last did. A failure is only logged: the next
        checkpoint copies what this one did not."""
        checkpointer = self._checkpointer
        if checkpointer is None:  # migrating
            return
        checkpointer.written()
        try:
            size = os.stat(self._wal).st_size
            if size <= WAL_LIMIT:
                self._checkpoint_past = WAL_LIMIT
            elif size > self._checkpoint_past:
                self._checkpoint_past = size + WAL_LIMIT
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except (OSError, sqlite3.Error) as exc:
            log.warning("checkpoint of %s failed: %s", self.path, exc)

    def _lock_writers(self, deadline: float) -> None:
        """The file lock other processes' writers hold, tried every WRITER_POLL seconds
        until the busy timeout (a writer stopped while it holds it must not stop this one
        for ever)."""
        while True:
            try:
                fcntl.flock(self._writers, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise self._busy() from None
                time.sleep(WRITER_POLL)
            except (OSError, ValueError) as exc:  # closed
                raise StoreError(f"SQLite store {self.path}: {exc}") from None

    def _busy(self) -> StoreError:
        return StoreError(f"SQLite store {self.path}: busy for {BUSY_TIMEOUT_MS // 1000} s")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._errors():
            connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
            if connection is None:
                connection = self._local.connection = self._connect()
            yield _Statements(connection)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        # A writer of another thread finishes first (or gives up at the busy timeout).
        locked = self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            with self._connections_lock:
                connections, self._connections = self._connections, []
            for connection in connections:
                connection.close()
            if self._writers >= 0:
                os.close(self._writers)
                self._writers = -1
        finally:
            if locked:
                self._write_lock.release()


class _Checkpointer(threading.Thread):
    """Copies committed pages from the WAL into the database file, once every
    CHECKPOINT_SECONDS while there are new ones."""

    def __init__(self, connection: sqlite3.Connection, wal: Path) -> None:
        super().__init__(name=f"checkpoint {wal.name}", daemon=True)
        self._connection = connection
        self._wal = wal
        connection.execute("PRAGMA busy_timeout=0")  # its checkpoints wait for no one
        self._written = threading.Event()
        self._stopping = threading.Event()

    def written(self) -> None:
        self._written.set()

    def run(self) -> None:
        while True:
            self._written.wait()
            if self._stopping.is_set():
                return
            self._written.clear()
            try:
                self._checkpoint()
            except (OSError, sqlite3.Error) as exc:  # full disk, say: again after the next write
                log.warning("checkpoint of %s failed: %s", self.name, exc)
            if self._stopping.wait(CHECKPOINT_SECONDS):
                return

    def _checkpoint(self) -> None:
        _, wal_pages, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # Cut back only a WAL past its limit: writes that extend the file cost more.
        if wal_pages == copied > 0 and os.stat(self._wal).st_size > WAL_LIMIT:
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def stop(self) -> None:
        self._stopping.set()
        self._written.set()
        if self.is_alive():
            self.join()


class SqliteMailStore(MailStore):
    """The mail store in `path` (created owner-only if missing, migrated if older)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(SqliteEngine(path))
