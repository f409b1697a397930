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

from borderline.api.app import PublishedLog, create_app
from borderline.api.witness import load_witness
from borderline.cloud import Cloud
from borderline.config import Listen
from borderline.report.logview import region_verifier_key
from borderline.tlog import LogLockedError

log = logging.getLogger(__name__)


def published_logs(cloud: Cloud) -> list[PublishedLog]:
    """Every region this process serves: where its log files are and how to verify them."""
    return [
        PublishedLog(
            region=region.id,
            origin=region.origin,
            directory=region.root / "log",
            verifier_key=str(region_verifier_key(region.origin, region.vault.signing_public_key)),
            witness=load_witness(cloud, region.id),
        )
        for region in cloud.regions.values()
    ]


class _EmbeddedServer(uvicorn.Server):
    """Signals belong to the runtime, which stops every service together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serves the log API and publishes the log every `checkpoint_interval` seconds (lapsed
    seals revealed, a fresh checkpoint), so what it serves trails the log by at most that."""

    def __init__(
        self,
        cloud: Cloud,
        listen: Listen | None = None,
        checkpoint_interval: float = 1.0,
        mounts: Sequence[Callable[[FastAPI], None]] = (),
    ) -> None:
        self.cloud = cloud
        # More routes beside the public log (the legal desk, its console), from the runtime.
        self.mounts = mounts
        self.listen = listen or cloud.config.api.listen
        self.checkpoint_interval = checkpoint_interval
        self._server: _EmbeddedServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = self.listen.port
        self.name = f"API {self.listen}"

    async def start(self) -> None:
        await self.publish()
        app = create_app(published_logs(self.cloud))
        for mount in self.mounts:
            mount(app)
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        # Bound here, not by uvicorn, so a port in use fails start() with a clear OSError.
        sock = socket.create_server((self.listen.host, self.listen.port), family=family)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, host=self.listen.host, port=self.port, log_level="warning", lifespan="off"
        )
        self._server = _EmbeddedServer(config)
        self._tasks = [
            asyncio.create_task(self._server.serve(sockets=[sock])),
            asyncio.create_task(self._publish_forever()),
        ]
        while not self._server.started:
            if self._tasks[0].done():
                self._tasks[1].cancel()
                self._tasks[0].result()
            await asyncio.sleep(0.01)

    async def publish(self) -> None:
        """Reveal sealed accesses whose orders lapsed (invariant 6), then sign and write a
        checkpoint for each region whose log grew; both are cheap when nothing changed."""
        today = datetime.now(UTC).date()
        for region in self.cloud.regions.values():
            try:
                await asyncio.to_thread(region.vault.reveal_lapsed, today)
                await asyncio.to_thread(region.transparency_log.checkpoint)
            except LogLockedError as exc:
                # A CLI command holds it for a moment; the next round publishes.
                log.warning("%s: checkpoint not published yet: %s", region.id, exc)

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            try:
                await self.publish()
            except Exception:
                log.exception("publishing the log failed")

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        serve, publish = self._tasks
        publish.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publish
        await serve
        await self.publish()
        self._server = None
