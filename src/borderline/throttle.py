"""Failed-login throttling shared by IMAP and SMTP submission: slows down password guessing
per address and per client IP, and keeps slow password hashing off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    first: float


class LoginThrottle:
    """Failed logins per address and per client IP: after `free` failures each further one
    is answered only after an exponentially growing delay, and after `lockout` failures
    within `window` seconds logins from that address or IP get a temporary NO."""

    def __init__(
        self,
        free: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        lockout: int = 10,
        window: float = 15 * 60,
    ) -> None:
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lockout = lockout
        self.window = window
        self._failures: dict[str, _Failures] = {}

    def _count(self, key: str, now: float) -> int:
        entry = self._failures.get(key)
        if entry is None or now - entry.first > self.window:
            return 0
        return entry.count

    def locked(self, address: str, ip: str) -> bool:
        now = time.monotonic()
        return max(self._count("a:" + address, now), self._count("i:" + ip, now)) >= self.lockout

    def failed(self, address: str, ip: str) -> float:
        """Record a failure; returns how long to wait before answering it."""
        now = time.monotonic()
        if len(self._failures) > 100_000:
            self._failures = {
                k: v for k, v in self._failures.items() if now - v.first <= self.window
            }
        worst = 0
        for key in ("a:" + address, "i:" + ip):
            entry = self._failures.get(key)
            if entry is None or now - entry.first > self.window:
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            worst = max(worst, entry.count)
        if worst <= self.free:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (worst - self.free - 1)))

    def succeeded(self, address: str, ip: str) -> None:
        self._failures.pop("a:" + address, None)

    async def attempt(self, check: Callable[[], bool], address: str, ip: str) -> bool:
        """Run a password check in a worker thread (argon2 takes ~0.1 s); a failure is
        recorded and answered only after the throttle's delay."""
        if await asyncio.to_thread(check):
            self.succeeded(address, ip)
            return True
        await asyncio.sleep(self.failed(address, ip))
        return False
