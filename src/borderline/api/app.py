"""The read-only log API: C2SP tlog-tiles resources and a C2SP tlog-witness endpoint per region.

The tiles and checkpoint are served straight from the region's log directory, exactly as
the log wrote them: the HTTP layer adds nothing a client would have to trust.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.gzip import GZipMiddleware

from borderline.tlog import Witness, WitnessError

CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"
SIZE_TYPE = "text/x.tlog.size"
# Tiles and bundles never change once written (tlog-tiles: "this endpoint is immutable").
IMMUTABLE = "public, max-age=31536000, immutable"
# The checkpoint is mutable; the spec asks that it not be cached beyond a few seconds.
MUTABLE = "no-cache"
MAX_WITNESS_BODY = 64 * 1024
_TILE = re.compile(
    r"(?P<level>entries|0|[1-9][0-9]?)/(?:x[0-9]{3}/)*[0-9]{3}(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


@dataclass(frozen=True)
class PublishedLog:
    """What the API serves for one region: its log files and, if configured, its witness."""

    region: str
    origin: str
    directory: pathlib.Path
    verifier_key: str
    witness: Witness | None = None


def valid_tile_path(path: str) -> bool:
    """A C2SP tile or entry-bundle path: level 0-63, width 1-255, nothing else (no `..`)."""
    match = _TILE.fullmatch(path)
    if match is None:
        return False
    level, width = match["level"], match["width"]
    return (level == "entries" or int(level) <= 63) and (width is None or int(width) <= 255)


def _read(path: pathlib.Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def create_app(logs: Sequence[PublishedLog]) -> FastAPI:
    by_region = {log.region: log for log in logs}
    app = FastAPI(
        title="Borderline transparency logs",
        description="Each region's access log as C2SP tlog-tiles, and its tlog-witness.",
    )
    # Entry bundles SHOULD be compressed at the HTTP layer (tlog-tiles).
    app.add_middleware(GZipMiddleware, minimum_size=1024)

    def region_log(region: str) -> PublishedLog:
        log = by_region.get(region)
        if log is None:
            raise HTTPException(404, f"no region {region!r} here (regions: {', '.join(by_region)})")
        return log

    def describe(log: PublishedLog) -> dict[str, str | None]:
        return {
            "region": log.region,
            "origin": log.origin,
            "verifier_key": log.verifier_key,
            "witness_key": log.witness.verifier_key() if log.witness else None,
        }

    @app.get("/log", summary="Every region log served here")
    def index() -> list[dict[str, str | None]]:
        return [describe(log) for log in logs]

    @app.get("/log/{region}", summary="The region's log origin and verifier key")
    def info(region: str) -> dict[str, str | None]:
        return describe(region_log(region))

    @app.api_route(
        "/log/{region}/checkpoint", methods=["GET", "HEAD"], summary="The latest signed checkpoint"
    )
    def checkpoint(region: str) -> Response:
        data = _read(region_log(region).directory / "checkpoint")
        if data is None:
            raise HTTPException(404, "this log has not published a checkpoint yet")
        return Response(data, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": MUTABLE})

    @app.api_route(
        "/log/{region}/tile/{path:path}",
        methods=["GET", "HEAD"],
        summary="A hash tile or entry bundle",
    )
    def tile(region: str, path: str) -> Response:
        log = region_log(region)
        if not valid_tile_path(path):
            raise HTTPException(400, "not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/...")
        data = _read(log.directory / "tile" / path)
        if data is None:
            raise HTTPException(404, f"no tile/{path}")
        return Response(data, media_type=TILE_TYPE, headers={"Cache-Control": IMMUTABLE})

    @app.post("/log/{region}/add-checkpoint", summary="C2SP tlog-witness add-checkpoint")
    async def add_checkpoint(region: str, request: Request) -> Response:
        witness = region_log(region).witness
        if witness is None:
            raise HTTPException(
                404,
                f"region {region} runs no witness: its operator has configured no witness key",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WITNESS_BODY:
                raise HTTPException(413, f"add-checkpoint bodies are at most {MAX_WITNESS_BODY}")
        try:
            # The witness fsyncs its state before answering: keep that off the event loop.
            cosignature = await run_in_threadpool(witness.add_checkpoint, bytes(body))
        except WitnessError as exc:
            if exc.latest_size is not None:
                # Set as a header: Starlette would append a charset to the media type.
                return Response(
                    f"{exc.latest_size}\n",
                    status_code=exc.status,
                    headers={"Content-Type": SIZE_TYPE},
                )
            return Response(f"{exc}\n", status_code=exc.status, media_type="text/plain")
        return Response(cosignature, media_type="text/plain; charset=utf-8")

    return app
