"""A region's delivery queues as an operator handles them (`borderline queue`, /metrics).

Each queue keeps its own table and store methods; `OperatorQueue` is the little an operator
needs of any of them: its items without their mail, how long it is, and two actions. A
running worker takes either action on its next pass: "retry" makes the item due now, and
"bounce" makes it due now with a reason, so the worker sends its sender a failure report
(DSN) instead of the mail, and drops it. A queue is one class here and one entry in
`operator_queues`.
"""

from __future__ import annotations

from typing import Protocol

from borderline.store import MailStore, OutboundItem, QueueEntry

LIST_LIMIT = 1000  # items listed per queue


class OperatorQueue(Protocol):
    name: str

    def entries(self, limit: int = LIST_LIMIT) -> list[QueueEntry]:
        """Items waiting, due or not, oldest first."""
        ...

    def entry(self, item_id: int) -> QueueEntry | None:
        """One item, or None if it is gone (delivered, bounced, or never was)."""
        ...

    def depth(self) -> tuple[int, float | None]:
        """How many items wait, and when the oldest was queued (None: none)."""
        ...

    def retry(self, item_id: int, now: float) -> bool:
        """Make the item due at `now`; False if it is gone."""
        ...

    def bounce(self, item_id: int, reason: str, now: float) -> bool:
        """Give up on the item, for `reason`, at `now`; False if it is gone."""
        ...


class RelayQueue:
    """Sealed mail waiting to be relayed to its recipients' home region."""

    name = "relay"

    def __init__(self, store: MailStore) -> None:
        self.store = store

    def entries(self, limit: int = LIST_LIMIT) -> list[QueueEntry]:
        return self.store.list_relays(limit)

    def entry(self, item_id: int) -> QueueEntry | None:
        found = self.store.list_relays(1, item_id)
        return found[0] if found else None

    def depth(self) -> tuple[int, float | None]:
        return self.store.relay_queue_age()

    def retry(self, item_id: int, now: float) -> bool:
        return self.store.retry_relay(item_id, now)

    def bounce(self, item_id: int, reason: str, now: float) -> bool:
        return self.store.bounce_relay(item_id, reason, now)


class OutboundQueue:
    """Mail to the Internet waiting in its sender's home region, one item per destination
    domain."""

    name = "outbound"

    def __init__(self, store: MailStore) -> None:
        self.store = store

    def entries(self, limit: int = LIST_LIMIT) -> list[QueueEntry]:
        return [_outbound_entry(item) for item in self.store.list_outbound(limit)]

    def entry(self, item_id: int) -> QueueEntry | None:
        item = self.store.outbound_item(item_id)
        return None if item is None else _outbound_entry(item)

    def depth(self) -> tuple[int, float | None]:
        return self.store.outbound_queue_age()

    def retry(self, item_id: int, now: float) -> bool:
        return self.store.retry_outbound(item_id, now) > 0

    def bounce(self, item_id: int, reason: str, now: float) -> bool:
        return self.store.bounce_outbound(item_id, reason, now)


def _outbound_entry(item: OutboundItem) -> QueueEntry:
    return QueueEntry(
        "outbound",
        item.id,
        item.domain,
        item.mail_from,
        item.rcpts,
        item.size,
        item.created,
        item.attempts,
        item.next_attempt,
        item.last_error,
        item.bounce,
    )


def operator_queues(store: MailStore) -> dict[str, OperatorQueue]:
    """Every queue of a region's store, by name."""
    queues: list[OperatorQueue] = [RelayQueue(store), OutboundQueue(store)]
    return {queue.name: queue for queue in queues}
