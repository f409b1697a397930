"""The one way Borderline opens an SQLite database: durable, private and shareable across
processes."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000
PRIVATE = 0o600


def _private(path: Path) -> None:
    """Create the database file readable by its owner only before SQLite opens it (SQLite
    gives its -wal and -shm files the database file's mode), and take group and other access
    away from files an older version created: they hold password hashes and wrapped keys."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
    except FileExistsError:
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                if file.stat().st_mode & 0o077:
                    file.chmod(PRIVATE)
            except FileNotFoundError:
                pass


def open_durable(path: Path, *, autocommit: bool = False) -> sqlite3.Connection:
    """WAL, synchronous=FULL (an fsync at every commit) and a busy wait, because ingest
    worker processes share the same files. `autocommit` leaves transactions to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _private(path)
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None if autocommit else "DEFERRED"
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
