"""One region's IMAP listeners (plain with STARTTLS, and implicit TLS), login throttling,
and the change notices that wake IDLE sessions."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote

from borderline.cloud import Region
from borderline.config import Config, Listen
from borderline.imap.session import LINE_LIMIT, Session
from borderline.smtp.tls import server_context

log = logging.getLogger(__name__)

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


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


class RegionImap:
    def __init__(self, region: Region, config: Config) -> None:
        self.region = region
        self.config = config
        self.max_message_size = config.cloud.max_message_size
        self.tls: ssl.SSLContext | None = server_context(
            region.root / "tls", f"{region.id}.{config.primary_domain}"
        )
        self.throttle = LoginThrottle()
        self.max_connections_per_ip = 100
        self._per_ip: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: dict[int, set[Session]] = {}
        self._wake: dict[Session, asyncio.Event] = {}
        self._flag_locks: dict[int, asyncio.Lock] = {}

    async def start(self) -> None:
        section = self.region.section
        if section.imap is not None:
            self._servers.append(await self._listen(section.imap, tls=False))
        if section.imaps is not None:
            self._servers.append(await self._listen(section.imaps, tls=True))

    async def _listen(self, address: Listen, tls: bool) -> asyncio.Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            peer = writer.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) else "unknown"
            if self._per_ip.get(ip, 0) >= self.max_connections_per_ip:
                writer.write(b"* BYE Too many connections from your address\r\n")
                writer.close()
                return
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            self._tasks.add(task)
            try:
                await Session(self, reader, writer, tls).run()
            except asyncio.CancelledError:
                # Stopping: end quietly, as asyncio logs a cancelled connection callback.
                writer.transport.abort()
            except Exception:
                log.exception("imap %s: session failed", self.region.id)
                writer.close()
            finally:
                self._tasks.discard(task)
                self._per_ip[ip] -= 1
                if not self._per_ip[ip]:
                    del self._per_ip[ip]

        return await asyncio.start_server(
            serve,
            address.host,
            address.port,
            ssl=self.tls if tls else None,
            limit=LINE_LIMIT,
            reuse_address=True,
        )

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def referral(self, address: str, home: str) -> str:
        """RFC 2221 LOGIN-REFERRALS response text pointing at the home region's listener."""
        section = self.config.region(home)
        listen = section.imap or section.imaps
        if listen is None:
            return f"[UNAVAILABLE] {address} is served by region {home}, which has no IMAP"
        host = listen.host
        if host in WILDCARD_HOSTS:
            host = f"{home}.{self.config.primary_domain}"
        elif ":" in host:
            host = f"[{host}]"
        url = f"imap://{quote(address, safe='')}@{host}:{listen.port}/"
        return f"[REFERRAL {url}] {address} is served by region {home}; log in there"

    def flag_lock(self, mailbox_id: int) -> asyncio.Lock:
        """Serializes flag writes to a mailbox so STORE UNCHANGEDSINCE (RFC 7162) checks and
        writes atomically: only this region's IMAP sessions, all in this process, write flags."""
        return self._flag_locks.setdefault(mailbox_id, asyncio.Lock())

    # change notices between sessions of this region

    def watch(self, session: Session, mailbox_id: int) -> None:
        self._watching.setdefault(mailbox_id, set()).add(session)

    def unwatch(self, session: Session) -> None:
        for sessions in self._watching.values():
            sessions.discard(session)
        self._wake.pop(session, None)

    def wake_event(self, session: Session) -> asyncio.Event:
        return self._wake.setdefault(session, asyncio.Event())

    def changed(self, mailbox_id: int) -> None:
        """Wake IDLE sessions on a mailbox now (mail from SMTP is found by their polling)."""
        for session in self._watching.get(mailbox_id, ()):
            event = self._wake.get(session)
            if event is not None:
                event.set()
