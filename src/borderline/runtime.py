"""Runs every adapter of the regions this process serves, in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI

from borderline import observe
from borderline.api import ApiServer, WitnessServer
from borderline.api.legal import legal_router
from borderline.api.ops import Operations
from borderline.api.peering import mount_peering
from borderline.cloud import Cloud
from borderline.config import ConfigError, Listen, load_config
from borderline.console import mount_console
from borderline.imap import RegionImap
from borderline.imap.summary import cheap_to_summarize, summarize
from borderline.legal import LegalDesk
from borderline.legal.office import LegalOffice
from borderline.notices import NoticeReceiver, NoticeSender
from borderline.peers import Peers
from borderline.smtp.server import RegionSmtp
from borderline.staff import StaffRoster
from borderline.store import StoreError
from borderline.tlog import Witness

log = logging.getLogger(__name__)

# How often a server looks for what other processes changed: the directory (accounts and
# aliases added or removed by the command line) and deletions handed to it.
CHANGES_SECONDS = 1.0
# How often a server deletes what lapsed preservation holds retained, and how far back each
# round looks again (a hold released while the clock was set back is still found; holds are
# few, so looking again costs a small transaction per account).
HOLD_PURGE_SECONDS = 60.0
HOLD_PURGE_OVERLAP = 86400.0


class ServeError(Exception):
    """The server cannot start as configured; the message says what to change."""


class Service(Protocol):
    """A listener or worker the runtime starts and stops."""

    @property
    def name(self) -> str: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Runtime:
    """All listeners and workers of this process. An `ingest_only` process (an extra
    ingest worker) accepts MX mail on a shared port and does nothing else."""

    def __init__(
        self,
        cloud: Cloud,
        ingest_only: bool = False,
        reuse_port: bool = False,
        notices: NoticeReceiver | NoticeSender | None = None,
    ) -> None:
        """`notices`: the main process hears through a NoticeReceiver which mailboxes its
        ingest workers delivered to; a worker tells it through a NoticeSender."""
        self.cloud = cloud
        self.ingest_only = ingest_only
        self.notices = notices
        # By region, the time up to which lapsed holds were purged (0: every one since
        # the store began, once at start), and when to look next.
        self._holds_purged: dict[str, float] = {}
        self._next_purge = 0.0
        for region in cloud.regions.values():
            region.planner.summarize = summarize  # what IMAP reads, stored with each message
            region.planner.cheap_to_summarize = cheap_to_summarize
        self.smtp = [
            RegionSmtp(region, cloud.config, ingest_only, reuse_port)
            for region in cloud.regions.values()
        ]
        peers = Peers(cloud.config, cloud.directory, cloud.regions.get)
        self.imap = (
            []
            if ingest_only
            else [RegionImap(r, cloud.config, peers) for r in cloud.regions.values()]
        )
        for smtp, imap in zip(self.smtp, self.imap, strict=False):
            smtp.committer.on_delivered = imap.delivered  # IDLE hears of new mail at once
        if isinstance(notices, NoticeSender):
            for smtp in self.smtp:
                smtp.committer.on_delivered = functools.partial(notices.delivered, smtp.region.id)
        api_listen = _api_listen(cloud)
        self.api: list[ApiServer] = []
        self.office: LegalOffice | None = None
        self.operations: Operations | None = None
        # Every listener is bound: from the end of start() to the start of stop().
        self.listening = False
        self._watcher: asyncio.Task[None] | None = None
        if not ingest_only and api_listen is not None:
            # The legal desk and the health checks are served beside the public log.
            self.office = LegalOffice(LegalDesk(cloud), StaffRoster.of(cloud.config))
            self.operations = Operations(cloud.regions, lambda: self.listening)
            mounts = [
                mount_peering(cloud.regions.get),
                *legal_mounts(self.office),
                self.operations.mount,
            ]
            self.api = [ApiServer(cloud, api_listen, mounts=mounts)]

    @property
    def services(self) -> list[Service]:
        return [*self.smtp, *self.imap, *self.api]

    async def start(self) -> None:
        """Start every service, or none: if one cannot listen, those already started stop
        again and the error names the service."""
        if not self.ingest_only:
            await asyncio.to_thread(_open_logs, self.cloud)
        begun: list[Service] = []
        try:
            for service in self.services:
                begun.append(service)  # stopped again on failure, even if half started
                try:
                    await service.start()
                except OSError as exc:
                    raise ServeError(f"{service.name}: {exc.strerror or exc}") from exc
        except BaseException:
            for service in reversed(begun):
                await service.stop()
            raise
        loop = asyncio.get_running_loop()
        self._watcher = loop.create_task(self._watch_changes())

        def account_deleted(address: str) -> None:  # on the thread that deleted it
            loop.call_soon_threadsafe(self._account_deleted, address)

        self.cloud.on_account_deleted = account_deleted
        if isinstance(self.notices, NoticeReceiver):
            self.notices.start(self._delivered_by_a_worker)
        self.listening = True

    def _account_deleted(self, address: str) -> None:
        for imap in self.imap:
            imap.account_deleted(address)

    def _delivered_by_a_worker(self, region_id: str, mailbox_ids: set[int]) -> None:
        for imap in self.imap:
            if imap.region.id == region_id:
                imap.delivered(mailbox_ids)

    async def _watch_changes(self) -> None:
        """Once a second, one read of the directory's change counter (and a look at the
        hand-off folders): so the command line's changes apply without SIGHUP, and no
        message pays for the check."""
        while True:
            await asyncio.sleep(CHANGES_SECONDS)
            try:
                await asyncio.to_thread(self._apply_changes)
            except Exception:
                log.exception("checking for changes made by other processes failed")

    def _apply_changes(self) -> None:
        if self.cloud.directory.changed_elsewhere():
            for region in self.cloud.regions.values():
                region.vault.forget_cached_keys()
        if not self.ingest_only:
            for done in self.cloud.answer_handoffs():
                log.info("%s", done)
            self._purge_lapsed_holds()

    def _purge_lapsed_holds(self) -> None:
        """Once in HOLD_PURGE_SECONDS, delete in each region what its lapsed holds kept."""
        now, tick = time.time(), time.monotonic()
        if tick < self._next_purge:
            return
        self._next_purge = tick + HOLD_PURGE_SECONDS
        for region in self.cloud.regions.values():
            since = self._holds_purged.get(region.id, 0.0)
            try:
                purged = region.store.purge_lapsed_holds(since)
            except StoreError as exc:
                log.warning("%s: what lapsed holds retained is not deleted yet: %s", region.id, exc)
                continue
            self._holds_purged[region.id] = now - HOLD_PURGE_OVERLAP
            if purged:
                log.info("%s: %d messages that lapsed holds retained deleted", region.id, purged)

    async def stop(self) -> None:
        self.listening = False
        self.cloud.on_account_deleted = None
        if isinstance(self.notices, NoticeReceiver):
            self.notices.stop()
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for service in reversed(self.services):
            await service.stop()
        if self.office is not None:
            self.office.close()
            self.office = None
        if self.operations is not None:
            self.operations.close()

    async def relays_drained(self, timeout: float = 30.0) -> bool:
        """Wait until no region has sealed mail waiting to be relayed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            waiting = sum(r.store.queued_relays() for r in self.cloud.regions.values())
            if waiting == 0:
                return True
            await asyncio.sleep(0.05)
        return False


def _open_logs(cloud: Cloud) -> None:
    """Open (and so check) every log: a log smaller than a checkpoint it signed must stop
    the server at start, not fail its first IMAP read."""
    for region in cloud.regions.values():
        region.transparency_log  # noqa: B018 - opening is the point


def legal_mounts(office: LegalOffice) -> list[Callable[[FastAPI], None]]:
    """The legal desk's API and its web console, on the API listener."""

    def mount_api(app: FastAPI) -> None:
        app.include_router(legal_router(office))

    return [mount_api, lambda app: mount_console(app, office)]


def _api_listen(cloud: Cloud) -> Listen | None:
    """[api] listen for a process serving every region; else the one region's own `api`."""
    if set(cloud.regions) == set(cloud.config.region_ids):
        return cloud.config.api.listen
    addresses = [r.section.api for r in cloud.regions.values() if r.section.api is not None]
    if len(addresses) != 1 or len(cloud.regions) != 1:
        log.warning("no log API: set `api` on the region this process serves alone")
        return None
    return addresses[0]


def listeners(cloud: Cloud) -> list[tuple[str, str, str]]:
    """(region, protocol, address) of every listener this process opens."""
    rows = []
    for region in cloud.regions.values():
        for name in ("smtp", "submission", "imap", "imaps"):
            address = getattr(region.section, name)
            if address is not None:
                rows.append((region.id, name, str(address)))
    api = _api_listen(cloud)
    if api is not None:
        served = "log, legal desk, console, health, metrics"
        rows.append((", ".join(cloud.regions), "api", f"{api} ({served})"))
    return rows


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """An ingest worker must not outlive the server that started it (even a SIGKILLed one)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1)
    stop.set()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.contextmanager
def run_lock(cloud: Cloud) -> Iterator[None]:
    """One server per region's data: a lock file beside each region's data, held while the
    process lives (the kernel drops it when the process dies, even by SIGKILL)."""
    held = []
    try:
        for region in cloud.regions.values():
            path = region.root / "serve.pid"
            file = path.open("a+")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                pid = file.read().strip() or "unknown"
                file.close()
                raise ServeError(
                    f"region {region.id} is already served from {region.root} (pid {pid})"
                ) from None
            file.seek(0)
            file.truncate()
            file.write(f"{os.getpid()}\n")
            file.flush()
            held.append(file)
        yield
    finally:
        for file in held:
            file.close()


def reload(cloud: Cloud, config_path: Path) -> str:
    """What SIGHUP reloads: the TLS certificates, the accounts' home regions and cached data
    keys (accounts added or deleted by other processes), and the log level and format (the
    command line's choices win). A config change that needs a restart is refused and named;
    nothing else is touched."""
    try:
        fresh = load_config(config_path)
    except ConfigError as exc:
        return f"reload refused: {config_path} is not valid: {exc}"
    changed = [
        name
        for name in (
            "cloud",
            "custodians",
            "regions",
            "api",
            "inbound",
            "dns",
            "addresses",
            "outbound",
        )
        if getattr(fresh, name) != getattr(cloud.config, name)
    ]
    if changed:
        return f"reload refused: [{'], ['.join(changed)}] changed; restart to apply"
    for region in cloud.regions.values():
        region.reload_tls()
        region.vault.forget_cached_keys()
    cloud.directory.forget_cached_homes()
    level, format = observe.configure_logging(fresh.log.level, fresh.log.format)
    return f"reloaded: TLS certificates, account homes, log level {level}, log format {format}"


async def serve_forever(
    cloud: Cloud,
    ingest_only: bool = False,
    reuse_port: bool = False,
    config_path: Path | None = None,
    announce: Callable[[str], None] = print,
    notices: NoticeReceiver | NoticeSender | None = None,
) -> None:
    """Start everything, then announce it; run until SIGINT/SIGTERM, then stop cleanly.
    SIGHUP reloads what can be reloaded safely (see `reload`)."""
    runtime = Runtime(cloud, ingest_only, reuse_port, notices)
    await runtime.start()
    stop = _stop_on_signals()
    loop = asyncio.get_running_loop()
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: announce(reload(cloud, config_path)))
    watchdog = loop.create_task(_stop_when_orphaned(stop)) if ingest_only else None
    if not ingest_only:
        for region_id, name, address in listeners(cloud):
            announce(f"{region_id:<12} {name:<11} {address}")
        announce("serving; Ctrl-C or SIGTERM stops, SIGHUP reloads")
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runtime.stop()
    if not ingest_only:
        announce("stopped")


async def serve_witness(witness: Witness, listen: Listen) -> None:
    """A standalone witness until SIGINT or SIGTERM (`borderline witness serve`)."""
    server = WitnessServer(witness, listen)
    await server.start()
    try:
        await _stop_on_signals().wait()
    finally:
        await server.stop()
