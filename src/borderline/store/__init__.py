"""Mail storage: one MailStore (the mail semantics) over an SQLite or a PostgreSQL engine."""

from __future__ import annotations

from pathlib import Path

from borderline.store.base import (
    SPECIAL_USE_MAILBOXES,
    Change,
    ChangeKind,
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
    run_holding,
)
from borderline.store.mail import MAX_RUN_COLUMNS, MailStore
from borderline.store.postgres import DEFAULT_TIMEOUT, URL_SCHEMES, PostgresMailStore
from borderline.store.sqlite import SqliteMailStore


def open_store(location: str | Path, timeout: float = DEFAULT_TIMEOUT) -> MailStore:
    """The store at `location`: a postgresql:// URL, or the path of an SQLite file.
    `timeout` bounds each wait on PostgreSQL (seconds)."""
    if isinstance(location, str) and location.startswith(URL_SCHEMES):
        return PostgresMailStore(location, timeout)
    return SqliteMailStore(Path(location))


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RUN_COLUMNS",
    "SPECIAL_USE_MAILBOXES",
    "Change",
    "ChangeKind",
    "Copied",
    "Delivery",
    "Hold",
    "MailStore",
    "MailboxInfo",
    "MailboxNotFound",
    "MessageColumns",
    "MessageInfo",
    "OutboundItem",
    "OutboundMessage",
    "OutboundRelay",
    "Placement",
    "PostgresMailStore",
    "QueueEntry",
    "RelayItem",
    "SqliteMailStore",
    "StoreError",
    "StoredColumn",
    "StoredSummaries",
    "open_store",
    "run_holding",
]
