"""The records the mail store hands out, and its errors. Blobs are ciphertext: the store never
sees mail."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

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
    """No such mailbox, or not one of the account's."""


SEEN, DELETED = "\\Seen", "\\Deleted"
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
    # IMAP \Recent: messages from this UID on were not yet seen by any session (recent).
    first_recent_uid: int = 1
    recent: int = 0


class MessageInfo(NamedTuple):
    """One message of a mailbox (a tuple: sessions make thousands of them)."""

    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float
    size: int
    blob_id: int


@dataclass(frozen=True)
class MessageColumns:
    """A mailbox's messages in UID order as columns, with the mailbox's HIGHESTMODSEQ and
    UIDNEXT as they were when the columns were read: what an IMAP session selects, without
    an object per message (messages with the same flags share one set)."""

    highestmodseq: int
    uidnext: int
    uids: tuple[int, ...] = ()
    modseqs: tuple[int, ...] = ()
    flags: tuple[frozenset[str], ...] = ()
    internal_dates: tuple[float, ...] = ()
    sizes: tuple[int, ...] = ()
    blob_ids: tuple[int, ...] = ()
    # Read `since` a MODSEQ: the UIDs expunged after it (the columns hold only the messages
    # appended or changed after it).
    expunged: tuple[int, ...] = ()
    # The distinct sets in `flags` (the mailbox's keywords are in them).
    flag_sets: frozenset[frozenset[str]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flag_sets", frozenset(self.flags))


@dataclass(frozen=True)
class Delivery:
    """One message for one account's mailbox, already encrypted by the vault."""

    account: str
    blob: bytes | bytearray  # a bytearray: the DATA buffer it was encrypted over
    size: int
    internal_date: float
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()
    # Set for mail relayed from another region: a retried relay is stored only once.
    relay_id: str | None = None
    # What IMAP reads instead of the message, encrypted by the vault (docs/store.md).
    summary: bytes | None = None


@dataclass(frozen=True)
class OutboundRelay:
    """Sealed mail to queue for another region, committed with the local deliveries."""

    dest_region: str
    mail_from: str
    rcpts: tuple[str, ...]
    sealed: bytes | bytearray


@dataclass(frozen=True)
class OutboundMessage:
    """Mail to the Internet to queue in the sender's home region: one destination domain's
    recipients, the message encrypted by the vault for the queue."""

    domain: str  # A-label, lower case
    mail_from: str
    rcpts: tuple[str, ...]
    blob: bytes
    size: int  # of the message, before encryption


@dataclass(frozen=True)
class OutboundItem:
    """Queued mail to the Internet, without its blob (`MailStore.outbound_blob` reads it):
    a pass over many items holds no message it is not sending."""

    id: int
    domain: str
    mail_from: str
    rcpts: tuple[str, ...]  # those not yet delivered or bounced
    size: int
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    delay_notified: bool
    bounce: str | None = None  # an operator's reason to give up on it (`bounce_outbound`)


@dataclass(frozen=True)
class Hold:
    """A preservation hold: nothing of the account may be deleted until it lapses."""

    id: int
    account: str
    reference: str
    until: float


@dataclass(frozen=True)
class RelayItem:
    """Mail sealed to another region, waiting to be relayed there; without its sealed
    bytes (`MailStore.relay_sealed` reads them when it is sent)."""

    id: int
    dest_region: str
    mail_from: str
    rcpts: tuple[str, ...]
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    bounce: str | None = None  # an operator's reason to give up on it (`bounce_relay`)


@dataclass(frozen=True)
class QueueEntry:
    """An item of a delivery queue as an operator sees it (`borderline queue`): all but the
    message itself, whichever queue it is in."""

    queue: str
    id: int  # unique within its queue in its region's store
    destination: str  # relay: the home region; outbound: the recipients' domain
    mail_from: str
    rcpts: tuple[str, ...]
    size: int
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    bounce: str | None


ChangeKind = Literal["append", "flags", "expunge"]


class Change(NamedTuple):
    """One row of a mailbox's change log: what happened to `uid` at `modseq`."""

    modseq: int
    uid: int
    kind: ChangeKind


class Placement(NamedTuple):
    """Where `deliver` put one message."""

    mailbox_id: int
    uid: int


class StoredColumn(NamedTuple):
    """One encrypted summary column: a field of the summaries of a mailbox's messages with
    UIDs first_uid to last_uid (a run)."""

    field: str
    first_uid: int
    last_uid: int
    data: bytes


class StoredSummaries(NamedTuple):
    """What `MailStore.summaries` read for the first `read` of some of a mailbox's messages:
    the columns of the runs that hold any of them, and by blob id the summaries of the
    others that have one; `skipped`, the (first UID, last UID) of the runs it read records
    for instead (their messages belong to a run already, so no new one may take them)."""

    columns: list[StoredColumn]
    singles: dict[int, bytes]
    read: int
    skipped: tuple[tuple[int, int], ...] = ()


def run_index(runs: Sequence[tuple[int, int]], firsts: Sequence[int], uid: int) -> int | None:
    """Where among these runs of summary columns ((first UID, last UID), in order, `firsts`
    their first UIDs) the one holding `uid` is, if one does."""
    at = bisect_right(firsts, uid)
    return at - 1 if at and uid <= runs[at - 1][1] else None


def run_holding(
    runs: Sequence[tuple[int, int]], firsts: Sequence[int], uid: int
) -> tuple[int, int] | None:
    """The run holding `uid`, if one does (`run_index`)."""
    at = run_index(runs, firsts, uid)
    return None if at is None else runs[at]


class Copied(NamedTuple):
    """One message `copy` copied: its UID in the source and the new one in the destination."""

    source_uid: int
    uid: int
