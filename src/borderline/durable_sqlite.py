"""The one way Borderline opens an SQLite database: durable and shareable across processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000


def open_durable(path: Path, *, autocommit: bool = False) -> sqlite3.Connection:
    """WAL, synchronous=FULL (an fsync at every commit) and a busy wait, because ingest
    worker processes share the same files. `autocommit` leaves transactions to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None if autocommit else "DEFERRED"
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection
