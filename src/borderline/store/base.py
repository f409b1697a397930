"""The store contract every backend keeps. Blobs are ciphertext: the store never sees mail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# (name, SPECIAL-USE attribute) created for every account; RFC 6154.
SPECIAL_USE_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)


class StoreError(Exception):
    """The store could not do what was asked; nothing was half written."""


class MailboxNotFound(StoreError):
    pass


FLAG_MODES = ("set", "add", "remove")


def check_flag_mode(mode: str) -> None:
    """Refuse an unknown STORE mode before any row is touched."""
    if mode not in FLAG_MODES:
        raise StoreError(f"flag mode must be one of {FLAG_MODES}")


def apply_flag_mode(old: frozenset[str], flags: frozenset[str], mode: str) -> frozenset[str]:
    """A message's flags after STORE FLAGS (set), +FLAGS (add) or -FLAGS (remove)."""
    return flags if mode == "set" else old | flags if mode == "add" else old - flags


@dataclass(frozen=True)
class MailboxInfo:
    id: int
    account: str
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    subscribed: bool
    messages: int = 0
    unseen: int = 0


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int
    blob_id: int


@dataclass(frozen=True)
class Delivery:
    """One message for one account's mailbox, already encrypted by the vault."""

    account: str
    blob: bytes
    size: int
    internal_date: float
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()
    # Set for mail relayed from another region: a retried relay is stored only once.
    relay_id: str | None = None


@dataclass(frozen=True)
class OutboundRelay:
    """Sealed mail to queue for another region, committed with the local deliveries."""

    dest_region: str
    mail_from: str
    rcpts: tuple[str, ...]
    sealed: bytes


@dataclass(frozen=True)
class Hold:
    """A preservation hold: nothing of the account may be deleted until it lapses."""

    id: int
    account: str
    reference: str
    until: float


@dataclass(frozen=True)
class RelayItem:
    """Mail sealed to another region, waiting to be relayed there."""

    id: int
    dest_region: str
    mail_from: str
    rcpts: tuple[str, ...]
    sealed: bytes
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None


class MailStore(Protocol):
    # accounts
    def create_account(self, address: str, password_hash: str) -> None: ...
    def password_hash(self, address: str) -> str | None: ...
    def set_password_hash(self, address: str, password_hash: str) -> None: ...
    def accounts(self) -> list[str]: ...

    # mailboxes
    def create_mailbox(
        self, account: str, name: str, special_use: str | None = None
    ) -> MailboxInfo: ...
    def mailboxes(self, account: str) -> list[MailboxInfo]: ...
    def mailbox(self, account: str, name: str) -> MailboxInfo: ...
    def rename_mailbox(self, account: str, old: str, new: str) -> None: ...
    def delete_mailbox(self, account: str, name: str) -> None: ...
    def set_subscribed(self, account: str, name: str, subscribed: bool) -> None: ...

    # messages
    def deliver(
        self, deliveries: Sequence[Delivery], relays: Sequence[OutboundRelay] = ()
    ) -> list[tuple[int, int]]: ...
    def messages(self, mailbox_id: int) -> list[MessageInfo]: ...
    def blob(self, blob_id: int) -> bytes: ...
    def set_flags(
        self, mailbox_id: int, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> list[MessageInfo]: ...
    def expunge(self, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]: ...
    def copy(self, mailbox_id: int, uids: Sequence[int], dest_id: int) -> list[tuple[int, int]]: ...
    def changes_since(self, mailbox_id: int, modseq: int) -> list[tuple[int, int, str]]: ...

    # the relay queue of sealed mail
    def due_relays(self, now: float, limit: int = 100) -> list[RelayItem]: ...
    def relay_done(self, item_ids: Sequence[int]) -> None: ...
    def relay_failed(self, item_id: int, error: str, next_attempt: float) -> None: ...
    def queued_relays(self) -> int: ...

    # preservation holds
    def add_hold(self, account: str, reference: str, until: float) -> int: ...
    def extend_hold(self, hold_id: int, until: float) -> None:
        """Move a live hold's end to `until`; StoreError if there is no such live hold or
        `until` is not later than its current end."""
        ...

    def release_hold(self, hold_id: int) -> None:
        """End a live hold now; StoreError if there is no such live hold."""
        ...

    def holds(self, now: float | None = None) -> list[Hold]: ...
    def retained(self, account: str) -> list[MessageInfo]: ...

    def close(self) -> None: ...
