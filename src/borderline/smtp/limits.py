"""How much mail an account may submit (connection caps: throttle.ConnectionLimiter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

HOUR = 3600.0
# Accounts whose sending a region keeps track of; past it, those that sent nothing lately
# (their allowance is whole again, so nothing is lost) are forgotten.
MAX_SENDERS = 100_000


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
