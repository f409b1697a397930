"""Failed-login throttling, one per region, shared by IMAP and SMTP submission; and the
connection caps both count their listeners' connections with (`ConnectionLimiter`).

A guess is counted three ways: for the (account, client address) pair, for the client
address across accounts, and for the account across client addresses. Each failure is
answered after a delay that grows with the worst of the three, so a guesser slows down
whatever it spreads its guesses over. Refusals (a temporary NO before any password check)
aim at the guesser, not at the owner: a pair that failed too often is refused; an address
or an account that failed too often is refused only for pairs that have not logged in
successfully before, so the real user keeps getting in from where they always log in.
State lives in memory (bounded), so a restart forgets it.

Within one connection a (login, password) pair is one guess however often it is sent
(`Guesses`): a mail client that tries AUTH PLAIN and then falls back to AUTH LOGIN with the
same wrong password has guessed once. Sending a pair again teaches the guesser nothing, so
counting it twice would only lock the owner out sooner.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MAX_ENTRIES = 100_000
# Distinct failed pairs one connection remembers; a new pair past these still counts.
MAX_GUESSES_PER_CONNECTION = 16


@dataclass
class _Failures:
    count: int
    first: float


# Password checks of the whole process, at most one per core at once: each argon2id check
# holds its memory cost (64 MiB by default), so a storm of logins waits its turn here
# instead of taking memory, or the default executor's threads that mail commits run on.
PASSWORD_CHECKS = ThreadPoolExecutor(
    len(os.sched_getaffinity(0)), thread_name_prefix="password-check"
)


class LoginThrottle:
    """`free` failures are answered at once, then after `base_delay` doubling up to
    `max_delay`. Within `window` seconds: `lockout` failures refuse the pair;
    `address_lockout` failures from one client address, or `account_lockout` failures for
    one account, refuse every pair that has no successful login in the last
    `trust_seconds`."""

    def __init__(
        self,
        free: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        lockout: int = 10,
        address_lockout: int = 100,
        account_lockout: int = 50,
        window: float = 15 * 60,
        trust_seconds: float = 30 * 24 * 3600,
    ) -> None:
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lockout = lockout
        self.address_lockout = address_lockout
        self.account_lockout = account_lockout
        self.window = window
        self.trust_seconds = trust_seconds
        self._failures: dict[tuple[str, ...], _Failures] = {}
        self._trusted: dict[tuple[str, str], float] = {}

    @staticmethod
    def _keys(account: str, ip: str) -> tuple[tuple[str, ...], ...]:
        return ("pair", account, ip), ("ip", ip), ("account", account)

    def _count(self, key: tuple[str, ...], now: float) -> int:
        entry = self._failures.get(key)
        if entry is None or now - entry.first > self.window:
            return 0
        return entry.count

    def _trusted_pair(self, account: str, ip: str, now: float) -> bool:
        since = self._trusted.get((account, ip))
        return since is not None and now - since <= self.trust_seconds

    def locked(self, account: str, ip: str) -> bool:
        """Whether to refuse this attempt before checking its password."""
        now = time.monotonic()
        pair, address, whole_account = (self._count(k, now) for k in self._keys(account, ip))
        if pair >= self.lockout:
            return True
        if self._trusted_pair(account, ip, now):
            return False
        return address >= self.address_lockout or whole_account >= self.account_lockout

    def failed(self, account: str, ip: str) -> float:
        """Record a failure; returns how long to wait before answering it."""
        now = time.monotonic()
        if len(self._failures) > MAX_ENTRIES:
            live = sorted(
                ((k, v) for k, v in self._failures.items() if now - v.first <= self.window),
                key=lambda item: item[1].first,
            )
            # Bounded even under guesses from more addresses than it can hold: the oldest go.
            self._failures = dict(live[-MAX_ENTRIES // 2 :])
        worst = 0
        for key in self._keys(account, ip):
            entry = self._failures.get(key)
            if entry is None or now - entry.first > self.window:
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            worst = max(worst, entry.count)
        if worst <= self.free:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (worst - self.free - 1)))

    def succeeded(self, account: str, ip: str) -> None:
        """The pair's failures are forgiven and the pair is trusted from now on."""
        now = time.monotonic()
        self._failures.pop(("pair", account, ip), None)
        if len(self._trusted) > MAX_ENTRIES:
            self._trusted = {
                k: v for k, v in self._trusted.items() if now - v <= self.trust_seconds
            }
        self._trusted[(account, ip)] = now

    async def attempt(
        self, check: Callable[[], bool], account: str, ip: str, *, local: bool = True
    ) -> bool:
        """Run a password check in a worker thread, a `local` one (argon2 here, ~0.1 s) on
        PASSWORD_CHECKS; one that asks another region waits on the network, so it takes no
        place there. A failure is recorded and answered only after the throttle's delay."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(PASSWORD_CHECKS if local else None, check):
            self.succeeded(account, ip)
            return True
        await asyncio.sleep(self.failed(account, ip))
        return False


class Guesses:
    """One connection's password checks through a throttle: a pair that already failed on
    this connection fails again at once, without a check, a delay or another count. Only
    a keyed hash of each failed pair is kept, under a key of this connection's own."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.throttle = throttle
        self._key = secrets.token_bytes(32)
        self._failed: set[bytes] = set()

    def _digest(self, account: str, password: str) -> bytes:
        pair = f"{account}\0{password}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, pair, hashlib.sha256).digest()

    async def attempt(
        self, check: Callable[[], bool], account: str, ip: str, password: str, *, local: bool = True
    ) -> bool:
        digest = self._digest(account, password)
        if digest in self._failed:
            return False
        if await self.throttle.attempt(check, account, ip, local=local):
            return True
        if len(self._failed) < MAX_GUESSES_PER_CONNECTION:
            self._failed.add(digest)
        return False


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
