"""SQLite's WAL is copied into the database file by a thread of its own, not inside the
commit that crosses a mark (store/sqlite.py, CHECKPOINT_SECONDS); under a steady load a
writer checkpoints once the WAL file passes WAL_LIMIT, once for each WAL_LIMIT it grows
while readers keep it from starting over; a checkpoint that fails fails no commit."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from borderline.store import Delivery
from borderline.store import sqlite as engine
from borderline.store.sqlite import SqliteMailStore

ACCOUNT = "alice@example.test"
MESSAGE = 100 * 1024


def delivery() -> Delivery:
    return Delivery(ACCOUNT, os.urandom(MESSAGE), MESSAGE, time.time())


def new_store(path: Path) -> SqliteMailStore:
    store = SqliteMailStore(path)
    store.create_account(ACCOUNT, "hash")
    return store


def test_committed_mail_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """No commit crosses a mark (there is none): the checkpointer copies the pages."""
    path = tmp_path / "mail.sqlite"
    store = new_store(path)
    try:
        store.deliver([delivery() for _ in range(20)])
        deadline = time.monotonic() + 10
        while path.stat().st_size < 20 * MESSAGE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 20 * MESSAGE
    finally:
        store.close()


def test_the_wal_stays_bounded_under_a_steady_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes follow each other too closely for a background checkpoint to catch up
    before the next (here there is only one): a writer that finds the WAL file past
    WAL_LIMIT checkpoints, and the file starts over."""
    monkeypatch.setattr(engine, "WAL_LIMIT", 4 * 1024 * 1024)
    monkeypatch.setattr(engine, "CHECKPOINT_SECONDS", 3600)  # one background checkpoint
    path = tmp_path / "mail.sqlite"
    wal = path.with_name(path.name + "-wal")
    store = new_store(path)
    batch = [delivery() for _ in range(4)]
    try:
        largest = 0
        for _ in range(60):  # 24 MiB in all
            store.deliver(batch)
            largest = max(largest, wal.stat().st_size)
        assert largest < engine.WAL_LIMIT + 2 * len(batch) * MESSAGE
        assert path.stat().st_size >= 40 * MESSAGE  # all but the last few on the file
    finally:
        store.close()


class Checkpoints:
    """The writer's connection, counting (or failing) the checkpoints run on it."""

    def __init__(self, connection: sqlite3.Connection, fail: bool = False) -> None:
        self.connection = connection
        self.fail = fail
        self.count = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if "wal_checkpoint" in sql:
            self.count += 1
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
        return self.connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def test_a_failed_checkpoint_fails_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mail is committed before the checkpoint: a 451 then would have its senders send
    it again (a full disk, say, fails the checkpoint)."""
    monkeypatch.setattr(engine, "WAL_LIMIT", 1024 * 1024)
    store = new_store(tmp_path / "mail.sqlite")
    try:
        writer = Checkpoints(store.engine._writer, fail=True)  # type: ignore[attr-defined]
        store.engine._writer = writer  # type: ignore[attr-defined]
        placed = store.deliver([delivery() for _ in range(20)])
        assert writer.count == 1 and len(placed) == 20
        mailbox = store.mailbox(ACCOUNT, "INBOX")
        assert mailbox is not None and len(store.messages(mailbox.id)) == 20
    finally:
        store.close()


def test_readers_that_hold_the_wal_back_cost_a_writer_one_checkpoint_per_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While readers keep the WAL from starting over it stays past WAL_LIMIT: a writer
    checkpointing at every commit would stall each one."""
    monkeypatch.setattr(engine, "WAL_LIMIT", 4 * 1024 * 1024)
    store = new_store(tmp_path / "mail.sqlite")
    mailbox = store.mailbox(ACCOUNT, "INBOX")
    assert mailbox is not None
    writer = Checkpoints(store.engine._writer)  # type: ignore[attr-defined]
    store.engine._writer = writer  # type: ignore[attr-defined]
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            store.messages(mailbox.id)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    batch = [delivery() for _ in range(4)]
    try:
        for _ in range(100):  # 40 MiB in all
            store.deliver(batch)
    finally:
        done.set()
        for reader in readers:
            reader.join()
        store.close()
    assert writer.count <= 100 * len(batch) * MESSAGE // engine.WAL_LIMIT + 1


def test_every_connection_reads_through_a_memory_map(tmp_path: Path) -> None:
    """A FETCH of a mailbox reads its ciphertexts through the map (docs/store.md): readers
    of every thread, and the writer, map the file, and a message read back is whole."""
    store = new_store(tmp_path / "mail.sqlite")
    try:
        [(_, uid)] = store.deliver([delivery()])
        blob_id = store.messages(store.mailbox(ACCOUNT, "INBOX").id)[0].blob_id
        maps: list[int] = []

        def read() -> None:
            with store.engine.read() as tx:
                row = tx.one("PRAGMA mmap_size")
                assert row is not None
                maps.append(int(row[0]))
            assert len(store.blobs([blob_id])[blob_id]) == MESSAGE

        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        read()
        with store.engine.write() as tx:
            row = tx.one("PRAGMA mmap_size")
            assert row is not None
            maps.append(int(row[0]))
        assert uid == 1 and maps == [engine.MMAP_SIZE] * 3
    finally:
        store.close()
