"""Issue 15 #16: mail.sqlite holds password hashes; it and its -wal and -shm are the owner's
only, whatever the umask, and an older, readable one is tightened when it opens."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.store import Delivery, SqliteMailStore, StoreError
from borderline.store import sqlite as sqlite_engine
from tests.store.conftest import ALICE

FILES = ("mail.sqlite", "mail.sqlite-wal", "mail.sqlite-shm")


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((folder / name).stat().st_mode) for name in FILES}


def test_the_database_files_are_created_owner_only(tmp_path: Path, open_umask: None) -> None:
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")  # a write: -wal and -shm exist now
    assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
    assert stat.S_IMODE((tmp_path / "mail.sqlite-writer").stat().st_mode) == 0o600
    store.close()


def test_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")
    for name in FILES:
        (tmp_path / name).chmod(0o644)
    again = SqliteMailStore(tmp_path / "mail.sqlite")
    assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
    again.close()
    store.close()


def test_commits_do_not_checkpoint_at_every_four_mebibytes(tmp_path: Path) -> None:
    """A checkpoint runs inside the commit that crosses the mark (store/sqlite.py): past
    SQLite's default 4 MiB of WAL the mail is still in the WAL, durable, and after close
    it is in the database file."""
    path = tmp_path / "mail.sqlite"
    store = SqliteMailStore(path)
    store.create_account(ALICE, "$argon2id$secret-hash")
    blob = os.urandom(100_000)
    for _ in range(8):  # 8 batches of 8 x 100 KB: 6.4 MB of WAL
        store.deliver([Delivery(ALICE, blob, len(blob), time.time()) for _ in range(8)])
    assert (tmp_path / "mail.sqlite-wal").stat().st_size > 6_000_000
    assert path.stat().st_size < 1_000_000, "a checkpoint ran at SQLite's default mark"
    store.close()
    assert path.stat().st_size > 6_000_000
    reopened = SqliteMailStore(path)
    try:
        assert len(reopened.messages(reopened.mailbox(ALICE, "INBOX").id)) == 64
    finally:
        reopened.close()


def test_a_writer_of_another_process_holds_writes_until_it_lets_go(tmp_path: Path) -> None:
    """Ingest workers queue on the `-writer` file lock (store/sqlite.py): a write waits
    while another open file holds it, and goes through once it is released."""
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")
    other = os.open(tmp_path / "mail.sqlite-writer", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    writing = threading.Thread(
        target=store.deliver, args=([Delivery(ALICE, b"blob", 4, time.time())],)
    )
    try:
        writing.start()
        writing.join(0.5)
        assert writing.is_alive(), "wrote while another writer held the lock"
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    writing.join(10)
    try:
        assert len(store.messages(store.mailbox(ALICE, "INBOX").id)) == 1
    finally:
        store.close()


def test_a_writer_stopped_while_it_holds_the_lock_fails_writes_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped ingest worker holding `-writer` must not stop this process's writers for
    ever: they fail with StoreError after the busy timeout, and write again once it is let go."""
    monkeypatch.setattr(sqlite_engine, "BUSY_TIMEOUT_MS", 300)
    store = SqliteMailStore(tmp_path / "mail.sqlite")
    store.create_account(ALICE, "$argon2id$secret-hash")
    other = os.open(tmp_path / "mail.sqlite-writer", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(StoreError, match="busy"):
            store.deliver([Delivery(ALICE, b"blob", 4, time.time())])
    finally:
        os.close(other)  # the stopped process dies: its lock goes with it
    try:
        store.deliver([Delivery(ALICE, b"blob", 4, time.time())])
        assert len(store.messages(store.mailbox(ALICE, "INBOX").id)) == 1
    finally:
        store.close()
