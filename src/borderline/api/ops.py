"""Health checks and metrics on the API listener: /healthz, /readyz and /metrics.

/healthz answers while the process serves HTTP. /readyz answers 200 only when every region
served here is ready: its store answers, its transparency log is open, and every listener is
bound. /metrics is the Prometheus text format: the event counts of this process
(borderline.observe) and, read at each scrape, each region's queue and log figures.

A check never waits long on a store that hangs and never piles calls up on it: each region
has one probe thread with at most one call in flight, and a check that is not answered in
PROBE_TIMEOUT counts as a failure while the call finishes on its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from borderline import observe
from borderline.cloud import Region
from borderline.queues import operator_queues
from borderline.tlog import verify_checkpoint

PROBE_TIMEOUT = 2.0
# Each queue's (items, when the oldest was queued), by queue name.
Depths = dict[str, tuple[int, float | None]]


class StoreProbe:
    """Asks a region's store how long its queues are, on a thread of its own."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self.queues = operator_queues(region.store)
        self._thread = ThreadPoolExecutor(1, f"probe-{region.id}")
        self._lock = threading.Lock()
        self._call: Future[Depths] | None = None

    def depths(self, timeout: float = PROBE_TIMEOUT) -> Depths:
        """Raises the store's error, or TimeoutError."""
        with self._lock:
            if self._call is None or self._call.done():
                self._call = self._thread.submit(self._depths)
            call = self._call
        return call.result(timeout)

    def _depths(self) -> Depths:
        return {name: queue.depth() for name, queue in self.queues.items()}

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def region_checks(region: Region, probe: StoreProbe, listening: bool) -> dict[str, str]:
    """Each readiness check of a region: "ok", or what is wrong in a few words (the
    listener is public: the error itself goes to the server's log)."""
    checks = {"listeners": "ok" if listening else "not listening"}
    try:
        probe.depths()
        checks["store"] = "ok"
    except TimeoutError:
        checks["store"] = f"no answer within {PROBE_TIMEOUT:g} s"
    except Exception as exc:
        observe.check_failed(region.id, "store", exc)
        checks["store"] = "unavailable"
    try:
        region.vault.access_log  # noqa: B018 - opens the log again if an append dropped it
        checks["log"] = "ok"
    except Exception as exc:
        observe.check_failed(region.id, "log", exc)
        checks["log"] = "unavailable"
    return checks


class RegionFigures(Collector):
    """What /metrics reads at each scrape: queue depth and age, log size and checkpoint."""

    def __init__(self, probes: Mapping[str, StoreProbe]) -> None:
        self.probes = probes

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        up = GaugeMetricFamily(
            "borderline_store_up",
            "Whether the region's store answered this scrape.",
            labels=["region"],
        )
        depth = GaugeMetricFamily(
            "borderline_queue_depth", "Items waiting in a queue.", labels=["region", "queue"]
        )
        oldest = GaugeMetricFamily(
            "borderline_queue_oldest_age_seconds",
            "Age of the oldest item in a queue (0 when it is empty).",
            labels=["region", "queue"],
        )
        entries = GaugeMetricFamily(
            "borderline_log_entries", "Entries in the region's transparency log.", labels=["region"]
        )
        published = GaugeMetricFamily(
            "borderline_log_published_entries",
            "Entries under the region's published checkpoint.",
            labels=["region"],
        )
        age = GaugeMetricFamily(
            "borderline_log_checkpoint_age_seconds",
            "Seconds since the region's published checkpoint was written.",
            labels=["region"],
        )
        for region_id, probe in self.probes.items():
            try:
                depths = probe.depths()
            except Exception:
                up.add_metric([region_id], 0)
                depths = {}
            else:
                up.add_metric([region_id], 1)
            for queue, (count, first) in depths.items():
                depth.add_metric([region_id, queue], count)
                oldest.add_metric([region_id, queue], 0 if first is None else now - first)
            log = probe.region.log
            if log is None:
                continue
            entries.add_metric([region_id], log.size)
            note = log.published()
            if note:
                published.add_metric([region_id], verify_checkpoint(note, log.verifier_key()).size)
            with contextlib.suppress(FileNotFoundError):
                written = (log.directory / "checkpoint").stat().st_mtime
                age.add_metric([region_id], max(0.0, now - written))
        yield from (up, depth, oldest, entries, published, age)


class Operations:
    """/healthz, /readyz, /readyz/<region> and /metrics for the regions served here, as a
    mount for the API app. `listening` says whether every listener of the process is bound."""

    def __init__(self, regions: Mapping[str, Region], listening: Callable[[], bool]) -> None:
        self.regions = regions
        self.listening = listening
        self.probes = {region_id: StoreProbe(region) for region_id, region in regions.items()}
        self.figures = CollectorRegistry(auto_describe=True)
        self.figures.register(RegionFigures(self.probes))

    def readiness(self, region_ids: list[str]) -> JSONResponse:
        up = self.listening()
        report: dict[str, Any] = {}
        for region_id in region_ids:
            checks = region_checks(self.regions[region_id], self.probes[region_id], up)
            report[region_id] = {"ready": all(v == "ok" for v in checks.values()), **checks}
        ready = all(r["ready"] for r in report.values())
        return JSONResponse({"ready": ready, "regions": report}, status_code=200 if ready else 503)

    def mount(self, app: FastAPI) -> None:
        router = APIRouter(tags=["operations"])

        @router.get("/healthz", summary="The process is up")
        def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @router.get("/readyz", summary="Every region served here is ready (else 503)")
        def readyz() -> JSONResponse:
            return self.readiness(list(self.regions))

        @router.get("/readyz/{region}", summary="The region is ready (else 503)")
        def region_ready(region: str) -> JSONResponse:
            if region not in self.regions:
                raise HTTPException(404, f"region {region!r} is not served here")
            return self.readiness([region])

        @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
        def metrics() -> Response:
            body = generate_latest(REGISTRY) + generate_latest(self.figures)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        app.include_router(router)

    def close(self) -> None:
        for probe in self.probes.values():
            probe.close()
