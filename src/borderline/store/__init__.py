"""Mail storage: the MailStore protocol, its SQLite and PostgreSQL implementations."""

from borderline.store.base import (
    SPECIAL_USE_MAILBOXES,
    Delivery,
    Hold,
    MailboxInfo,
    MailboxNotFound,
    MailStore,
    MessageInfo,
    OutboundRelay,
    RelayItem,
    StoreError,
)
from borderline.store.postgres import PostgresMailStore
from borderline.store.sqlite import SqliteMailStore

__all__ = [
    "SPECIAL_USE_MAILBOXES",
    "Delivery",
    "Hold",
    "MailStore",
    "MailboxInfo",
    "MailboxNotFound",
    "MessageInfo",
    "OutboundRelay",
    "PostgresMailStore",
    "RelayItem",
    "SqliteMailStore",
    "StoreError",
]
