"""One region's IMAP listeners (plain with STARTTLS, and implicit TLS), the threads that do
its store calls and message parsing, and the change notices between its sessions."""

from __future__ import annotations

import asyncio
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from borderline import observe
from borderline.cloud import Region
from borderline.config import WILDCARD_HOSTS, Config, Listen
from borderline.imap.limits import LINE_LIMIT
from borderline.imap.session import Session
from borderline.imap.view import Snapshots
from borderline.peers import Peers
from borderline.store import StoreError
from borderline.throttle import ConnectionLimiter

log = logging.getLogger(__name__)

# A store call that takes longer is answered NO [UNAVAILABLE] (SQLite waits 30 s for a lock).
STORE_TIMEOUT = 20.0
# Store calls of all sessions at once; calls that hang hold a thread until the store answers.
STORE_THREADS = 32
# Parsing and rendering of messages at once (the GIL shares them, the loop stays responsive).
WORK_THREADS = 4
# How often one read of the store looks for changes made outside this process (an ingest-only
# worker's deliveries) to the mailboxes IDLE sessions wait on; changes made here wake them
# at once.
WATCH_INTERVAL = 1.0


class RegionImap:
    def __init__(self, region: Region, config: Config, peers: Peers) -> None:
        self.region = region
        self.peers = peers
        self.name = f"{region.id} IMAP"
        self.config = config
        self.max_message_size = config.cloud.max_message_size
        self.tls: ssl.SSLContext | None = region.tls
        self.throttle = region.logins
        # The connections of both listeners count together.
        self.connections = ConnectionLimiter(
            config.imap.max_connections, config.imap.max_connections_per_ip
        )
        self.store_timeout = STORE_TIMEOUT
        self.store_threads = ThreadPoolExecutor(STORE_THREADS, f"imap-{region.id}-store")
        self.work_threads = ThreadPoolExecutor(WORK_THREADS, f"imap-{region.id}-work")
        self._mailbox_epochs: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watching: dict[int, set[Session]] = {}
        self._wake: dict[Session, asyncio.Event] = {}
        self._asleep: set[Session] = set()
        self._flag_locks: dict[int, asyncio.Lock] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.snapshots = Snapshots()

    async def start(self) -> None:
        section = self.region.section
        if section.imap is not None:
            self._servers.append(await self._listen(section.imap, tls=False))
        if section.imaps is not None:
            self._servers.append(await self._listen(section.imaps, tls=True))
        self._watcher = asyncio.get_running_loop().create_task(self._watch_store())

    async def _listen(self, address: Listen, tls: bool) -> asyncio.Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            peer = writer.get_extra_info("peername")
            slot = self.connections.acquire(str(peer[0]) if isinstance(peer, tuple) else "unknown")
            if slot is None:  # RFC 5530 UNAVAILABLE: try again later
                writer.write(b"* BYE [UNAVAILABLE] Too many connections\r\n")
                writer.close()
                return
            self._tasks.add(task)
            observe.imap_session_opened(self.region.id)
            try:
                await Session(self, reader, writer, tls).run()
            except asyncio.CancelledError:
                # Stopping: end quietly, as asyncio logs a cancelled connection callback.
                writer.transport.abort()
            except Exception:
                log.exception("imap %s: session failed", self.region.id)
                writer.close()
            finally:
                observe.imap_session_closed(self.region.id)
                self._tasks.discard(task)
                self.connections.release(slot)

        return await asyncio.start_server(
            serve,
            address.host,
            address.port,
            ssl=self.tls if tls else None,
            limit=LINE_LIMIT,
            reuse_address=True,
        )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        # Calls still running (one may hang on the store) finish on their own threads.
        self.store_threads.shutdown(wait=False, cancel_futures=True)
        self.work_threads.shutdown(wait=False, cancel_futures=True)

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

    def mailboxes_changed(self, account: str, deleted: int | None = None) -> None:
        """One of the account's mailboxes was deleted or renamed: each of its sessions with a
        mailbox selected checks with the store, before its next command, that the mailbox is
        still there (Session.check_selected), and an IDLE on a deleted one wakes up for it."""
        self._mailbox_epochs[account] = self.mailbox_epoch(account) + 1
        if deleted is not None:
            self.changed(deleted)

    def mailbox_epoch(self, account: str) -> int:
        return self._mailbox_epochs.get(account, 0)

    def account_deleted(self, account: str) -> None:
        """The account was deleted (Region.deletions counts it): each of its sessions ends
        before its next command (Session.check_account), and one in IDLE at once (runtime.py
        wires this in)."""
        for session, event in self._wake.items():
            if session.logged_in_as(account):
                event.set()

    def account_generation(self, account: str) -> int:
        return self.region.deletions[account]

    def watch(self, session: Session, mailbox_id: int) -> None:
        self._watching.setdefault(mailbox_id, set()).add(session)

    def unwatch(self, session: Session) -> None:
        for sessions in self._watching.values():
            sessions.discard(session)
        self._wake.pop(session, None)

    def wake_event(self, session: Session) -> asyncio.Event:
        """The event that wakes `session` while it is IDLE (until `idle_done`): created
        before the session's first sync, so no change slips between that sync and the wait."""
        return self._wake.setdefault(session, asyncio.Event())

    async def sleep_until_woken(
        self, session: Session, interrupt: asyncio.Task[bytes], timeout: float
    ) -> None:
        """Sleep until a change wakes `session`, `interrupt` completes or `timeout` passes.
        Only a session asleep here is woken by the store watcher: one in the middle of a
        sync reports the change itself or is woken at the next interval, so no change costs
        a session two store reads."""
        event = self.wake_event(session)
        waiter = asyncio.ensure_future(event.wait())
        self._asleep.add(session)
        try:
            await asyncio.wait({interrupt, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            self._asleep.discard(session)
            waiter.cancel()
            event.clear()

    def idle_done(self, session: Session) -> None:
        self._wake.pop(session, None)

    def changed(self, mailbox_id: int) -> None:
        """Wake the IDLE sessions on a mailbox now: another session or a delivery of this
        process changed it (runtime.py wires SMTP's deliveries here)."""
        for session in self._watching.get(mailbox_id, ()):
            event = self._wake.get(session)
            if event is not None:
                event.set()

    def delivered(self, mailbox_ids: set[int]) -> None:
        for mailbox_id in mailbox_ids:
            self.changed(mailbox_id)

    async def _watch_store(self) -> None:
        """One store read per interval for all IDLE sessions, not one per session: wake
        those whose mailbox moved past what they last reported."""
        store = self.region.store
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            watched = [
                mailbox_id
                for mailbox_id, sessions in self._watching.items()
                if not sessions.isdisjoint(self._asleep)
            ]
            if not watched:
                continue
            future = self.store_threads.submit(store.highest_modseqs, watched)
            try:
                current = await asyncio.wait_for(asyncio.wrap_future(future), self.store_timeout)
            except (StoreError, TimeoutError) as exc:
                log.warning("imap %s: cannot look for changes: %s", self.region.id, exc)
                continue
            for mailbox_id, modseq in current.items():
                for session in self._watching.get(mailbox_id, set()) & self._asleep:
                    event = self._wake[session]
                    if not event.is_set() and session.selected_modseq() < modseq:
                        event.set()
