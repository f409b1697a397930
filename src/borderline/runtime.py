"""Runs every adapter of the regions this process serves, in one asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from borderline.api import ApiServer
from borderline.cloud import Cloud
from borderline.config import Config
from borderline.imap import RegionImap
from borderline.smtp.server import RegionSmtp

log = logging.getLogger(__name__)


class Runtime:
    """All listeners and workers of this process. An `ingest_only` process (an extra
    ingest worker) accepts MX mail on a shared port and does nothing else."""

    def __init__(self, cloud: Cloud, ingest_only: bool = False, reuse_port: bool = False) -> None:
        self.cloud = cloud
        self.smtp = [
            RegionSmtp(region, cloud.config, ingest_only, reuse_port)
            for region in cloud.regions.values()
        ]
        self.imap = (
            [] if ingest_only else [RegionImap(r, cloud.config) for r in cloud.regions.values()]
        )
        self.api = [] if ingest_only else [ApiServer(cloud)]

    async def start(self) -> None:
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


def listeners(config: Config, region_ids: list[str]) -> list[tuple[str, str, str]]:
    """(region, protocol, address) of every listener the given regions open."""
    rows = []
    for region_id in region_ids:
        section = config.region(region_id)
        for name in ("smtp", "submission", "imap", "imaps"):
            address = getattr(section, name)
            if address is not None:
                rows.append((region_id, name, str(address)))
    return rows


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """An ingest worker must not outlive the server that started it (even a SIGKILLed one)."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1)
    stop.set()


async def serve_forever(cloud: Cloud, ingest_only: bool = False, reuse_port: bool = False) -> None:
    runtime = Runtime(cloud, ingest_only, reuse_port)
    await runtime.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdog = loop.create_task(_stop_when_orphaned(stop)) if ingest_only else None
    try:
        await stop.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await runtime.stop()
