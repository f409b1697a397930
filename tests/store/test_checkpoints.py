"""SQLite's WAL is copied into the database file by a thread of its own, not inside the
commit that crosses a mark (store/sqlite.py, CHECKPOINT_SECONDS), and the WAL file stays
within WAL_LIMIT (and one commit) under any load."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
