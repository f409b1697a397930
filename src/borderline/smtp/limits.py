"""Connection caps for a listener: in all, and per client network; and how much mail an
account may submit."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

HOUR = 3600.0
# Accounts whose sending a region keeps track of; past it, those that sent nothing lately
# (their allowance is whole again, so nothing is lost) are forgotten.
MAX_SENDERS = 100_000


def client_network(host: str) -> str:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 (one subscriber
    line gets a whole /64, so counting single IPv6 addresses would cap nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionLimiter:
    """Counts open connections; `acquire` refuses one over either cap."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0

    def acquire(self, host: str) -> str | None:
        """The slot to release when the connection ends, or None: refuse it."""
        key = client_network(host)
        if self._count >= self.total or self._open[key] >= self.per_client:
            return None
        self._open[key] += 1
        self._count += 1
        return key

    def release(self, key: str) -> None:
        self._count -= 1
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]


@dataclass
class _Allowance:
    messages: float
    recipients: float
    at: float


class SendingLimit:
    """Per account, at most `messages` messages and `recipients` recipients an hour on
    submission: two token buckets that hold an hour's worth and refill at that rate, so
    a burst may spend the hour at once and then the account sends at the hourly rate. A
    compromised account's password then sends that much spam an hour, not what the
    connection caps allow. One per region: both submission ports count together."""

    def __init__(
        self, messages: int, recipients: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.messages = messages
        self.recipients = recipients
        self._clock = clock
        self._senders: dict[str, _Allowance] = {}

    def _allowance(self, account: str) -> _Allowance:
        now = self._clock()
        left = self._senders.get(account)
        if left is None:
            return _Allowance(self.messages, self.recipients, now)
        elapsed = now - left.at
        return _Allowance(
            min(self.messages, left.messages + elapsed * self.messages / HOUR),
            min(self.recipients, left.recipients + elapsed * self.recipients / HOUR),
            now,
        )

    def allows(self, account: str, recipients: int = 0) -> bool:
        """Whether one more message, to `recipients` recipients, is within the limit."""
        left = self._allowance(account)
        return left.messages >= 1 and left.recipients >= recipients

    def take(self, account: str, recipients: int) -> bool:
        """Count a message to `recipients` recipients if it is within the limit."""
        left = self._allowance(account)
        if left.messages < 1 or left.recipients < recipients:
            return False
        left.messages -= 1
        left.recipients -= recipients
        if len(self._senders) >= MAX_SENDERS and account not in self._senders:
            self._forget_whole()
        self._senders[account] = left
        return True

    def give_back(self, account: str, recipients: int) -> None:
        """Undo a `take` whose message was not stored after all."""
        left = self._allowance(account)
        left.messages = min(self.messages, left.messages + 1)
        left.recipients = min(self.recipients, left.recipients + recipients)
        self._senders[account] = left

    def _forget_whole(self) -> None:
        self._senders = {
            account: left
            for account, left in self._senders.items()
            if (whole := self._allowance(account)).messages < self.messages
            or whole.recipients < self.recipients
        }
