"""The HTTP API as one more service of the runtime: uvicorn embedded in the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI

from borderline.api.app import PublishedLog, create_app, create_witness_app
from borderline.cloud import Cloud
from borderline.config import Listen
from borderline.directory import DirectoryError
from borderline.report.logview import region_verifier_key
from borderline.tlog import LogLockedError, VerifierKey, Witness
from borderline.tlog.witnesskey import open_witness
from borderline.witnessing import WitnessPublisher

log = logging.getLogger(__name__)


def region_log_keys(cloud: Cloud) -> dict[str, str | VerifierKey]:
    """origin -> verifier key of every region log in the directory: what a region's witness
    cosigns, so each custodian can vouch that the others show everybody one history."""
    keys: dict[str, str | VerifierKey] = {}
    for rid in cloud.config.region_ids:
        origin = f"{cloud.config.primary_domain}/{rid}"
        try:
            keys[origin] = region_verifier_key(origin, cloud.directory.region_keys(rid).signing_key)
        except DirectoryError:
            continue
    return keys


def published_logs(cloud: Cloud) -> list[PublishedLog]:
    """Every region this process serves: where its log files are and how to verify them."""
    keys = region_log_keys(cloud)
    return [
        PublishedLog(
            region=region.id,
            origin=region.origin,
            directory=region.root / "log",
            verifier_key=str(region_verifier_key(region.origin, region.vault.signing_public_key)),
            witness=open_witness(region.witness_dir, keys),
        )
        for region in cloud.regions.values()
    ]


class _EmbeddedServer(uvicorn.Server):
    """Signals belong to the runtime, which stops every service together; `exit` stops the
    server at once instead of at uvicorn's next tenth-of-a-second poll."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        counter = 0  # on_tick refreshes the Date header when the counter is a multiple of 10
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 1.0)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Http:
    """uvicorn serving one app on a socket bound here, so a busy port fails start() with a
    clear OSError, and with TCP_NODELAY, which asyncio would not set (see listen_socket)."""

    def __init__(self, listen: Listen) -> None:
        self.listen = listen
        self.port = listen.port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.name = f"API {listen}"

    async def start_app(self, app: FastAPI) -> None:
        sock = listen_socket(self.listen)
        self.port = sock.getsockname()[1]
        # No log_config: uvicorn's records go through the root logger's one formatter
        # (borderline.observe); at WARNING, so no access line names a client address.
        config = uvicorn.Config(
            app,
            host=self.listen.host,
            port=self.port,
            log_level="warning",
            log_config=None,
            lifespan="off",
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    @property
    def connections(self) -> list[socket.socket]:
        """The sockets of the open client connections (for tests of socket options)."""
        if self._server is None:
            return []
        return [c.transport.get_extra_info("socket") for c in self._server.server_state.connections]

    async def stop_http(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.exit()
        await self._task
        self._server = None


def listen_socket(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.create_server((listen.host, listen.port), family=family)
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and an accepted
    # socket of create_server() has proto 0: without this, Nagle's algorithm and delayed
    # ACKs hold every keep-alive response for about 40 ms. Accepted sockets inherit it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class ApiServer(_Http):
    """Serves the log API and publishes the log every `checkpoint_interval` seconds (lapsed
    seals revealed, a fresh checkpoint pushed to the region's witnesses), so what it serves
    trails the log by at most that."""

    def __init__(
        self,
        cloud: Cloud,
        listen: Listen | None = None,
        checkpoint_interval: float = 1.0,
        mounts: Sequence[Callable[[FastAPI], None]] = (),
    ) -> None:
        super().__init__(listen or cloud.config.api.listen)
        self.cloud = cloud
        # More routes beside the public log (the legal desk, its console), from the runtime.
        self.mounts = mounts
        self.checkpoint_interval = checkpoint_interval
        self._publisher_task: asyncio.Task[None] | None = None
        self._witnesses = {
            r.id: WitnessPublisher(r.section.witnesses, r.origin)
            for r in cloud.regions.values()
            if r.section.witnesses
        }

    async def start(self) -> None:
        """Refuses (CorruptLogError) a log smaller than a checkpoint it signed, whether the
        copy kept outside its directory or one of its witnesses holds that checkpoint."""
        for region_id, publisher in self._witnesses.items():
            region = self.cloud.region(region_id)
            await asyncio.to_thread(publisher.check_start, region.transparency_log)
        await self.publish()
        app = create_app(published_logs(self.cloud))
        for mount in self.mounts:
            mount(app)
        await self.start_app(app)
        self._publisher_task = asyncio.create_task(self._publish_forever())

    async def publish(self) -> None:
        """Reveal sealed accesses whose orders lapsed (invariant 6), sign a checkpoint for each
        region whose log grew and have it cosigned; all cheap when nothing changed."""
        today = datetime.now(UTC).date()
        for region in self.cloud.regions.values():
            try:
                await asyncio.to_thread(region.vault.reveal_lapsed, today)
                await asyncio.to_thread(region.transparency_log.checkpoint)
            except LogLockedError as exc:
                # A CLI command holds it for a moment; the next round publishes.
                log.warning("%s: checkpoint not published yet: %s", region.id, exc)
                continue
            publisher = self._witnesses.get(region.id)
            if publisher is not None:
                problems = await asyncio.to_thread(publisher.push, region.transparency_log)
                for problem in problems:
                    log.warning("%s: %s", region.id, problem)

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            try:
                await self.publish()
            except Exception:
                log.exception("publishing the log failed")

    async def stop(self) -> None:
        if self._publisher_task is None:
            return
        self._publisher_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._publisher_task
        self._publisher_task = None
        await self.stop_http()
        await self.publish()
        for publisher in self._witnesses.values():
            publisher.close()


class WitnessServer(_Http):
    """A standalone witness for other operators' logs (`borderline witness serve`)."""

    def __init__(self, witness: Witness, listen: Listen) -> None:
        super().__init__(listen)
        self.witness = witness

    async def start(self) -> None:
        await self.start_app(create_witness_app(self.witness))

    async def stop(self) -> None:
        await self.stop_http()
