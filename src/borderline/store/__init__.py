"""Mail storage: the MailStore protocol and its SQLite implementation."""

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
    "RelayItem",
    "SqliteMailStore",
    "StoreError",
]
