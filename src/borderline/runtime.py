"""Runs every adapter of the regions this process serves, in one asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from borderline.api import ApiServer, WitnessServer
from borderline.cloud import Cloud
from borderline.config import Listen
from borderline.imap import RegionImap
from borderline.smtp.server import RegionSmtp
from borderline.tlog import Witness

log = logging.getLogger(__name__)


class Runtime:
    """All listeners and workers of this process. An `ingest_only` process (an extra
    ingest worker) accepts MX mail on a shared port and does nothing else."""

    def __init__(self, cloud: Cloud, ingest_only: bool = False, reuse_port: bool = False) -> None:
        self.cloud = cloud
        self.ingest_only = ingest_only
        self.smtp = [
            RegionSmtp(region, cloud.config, ingest_only, reuse_port)
            for region in cloud.regions.values()
        ]
        self.imap = (
            [] if ingest_only else [RegionImap(r, cloud.config) for r in cloud.regions.values()]
        )
        api_listen = _api_listen(cloud)
        self.api = [] if ingest_only or api_listen is None else [ApiServer(cloud, api_listen)]

    async def start(self) -> None:
        if not self.ingest_only:
            await asyncio.to_thread(_open_logs, self.cloud)
        for service in self.smtp:
            await service.start()
        for imap in self.imap:
            await imap.start()
        for api in self.api:
            await api.start()

    async def stop(self) -> None:
        for api in self.api:
            await api.stop()
        for imap in self.imap:
            await imap.stop()
        for service in self.smtp:
            await service.stop()

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
        rows.append((", ".join(cloud.regions), "log api", str(api)))
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


async def serve_forever(cloud: Cloud, ingest_only: bool = False, reuse_port: bool = False) -> None:
    runtime = Runtime(cloud, ingest_only, reuse_port)
    await runtime.start()
    stop = _stop_on_signals()
    loop = asyncio.get_running_loop()
    watchdog = loop.create_task(_stop_when_orphaned(stop)) if ingest_only else None
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runtime.stop()


async def serve_witness(witness: Witness, listen: Listen) -> None:
    """A standalone witness until SIGINT or SIGTERM (`borderline witness serve`)."""
    server = WitnessServer(witness, listen)
    await server.start()
    try:
        await _stop_on_signals().wait()
    finally:
        await server.stop()
