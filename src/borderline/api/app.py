"""The read-only log API: C2SP tlog-tiles resources and a C2SP tlog-witness endpoint per region.

The tiles and checkpoint are served straight from the region's log directory, exactly as
the log wrote them: the HTTP layer adds nothing a client would have to trust.
"""

from __future__ import annotations

import errno
import pathlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
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
    r"(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)
# A tile index is below 2**64 / 256: at most seven 3-digit groups. Longer paths name no tile
# (and would make the file system answer ENAMETOOLONG).
_MAX_INDEX_GROUPS = 7
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")


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
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None
        raise


async def bounded_body(request: Request, limit: int) -> bytes:
    """A request body read no further than `limit` bytes (413 beyond)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request bodies here are at most {limit} bytes")
    return bytes(body)


def witness_routes(router: APIRouter, prefix: str, witness_of: Callable[..., Witness]) -> None:
    """C2SP tlog-witness under `prefix`: POST add-checkpoint and the monitoring GET
    <origin hash>/checkpoint. `witness_of` maps the prefix's path parameters to the witness."""

    @router.post(f"{prefix}/add-checkpoint", summary="C2SP tlog-witness add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        witness = witness_of(**request.path_params)
        body = await bounded_body(request, MAX_WITNESS_BODY)
        try:
            # The witness fsyncs its state before answering: keep that off the event loop.
            cosignature = await run_in_threadpool(witness.add_checkpoint, body)
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

    @router.get(
        f"{prefix}/{{origin_hash}}/checkpoint",
        summary="tlog-witness monitoring: the latest checkpoint cosigned for a log",
    )
    def monitored(origin_hash: str, request: Request) -> Response:
        params = {k: v for k, v in request.path_params.items() if k != "origin_hash"}
        witness = witness_of(**params)
        valid = _ORIGIN_HASH.fullmatch(origin_hash) is not None
        note = witness.latest_note_by_hash(origin_hash) if valid else None
        if note is None:
            raise HTTPException(404, "this witness has cosigned no checkpoint of that log")
        return Response(note, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": MUTABLE})


def create_witness_app(witness: Witness) -> FastAPI:
    """A standalone witness (`borderline witness serve`): the prefix is the server root."""
    app = FastAPI(title=f"Witness {witness.name}", description="A C2SP tlog-witness.")
    router = APIRouter()
    witness_routes(router, "", lambda: witness)
    app.include_router(router)
    return app


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

    # HEAD is served too, but kept out of the OpenAPI schema (one operation id per path).
    @app.head("/log/{region}/checkpoint", include_in_schema=False)
    @app.get("/log/{region}/checkpoint", summary="The published checkpoint, with cosignatures")
    def checkpoint(region: str) -> Response:
        data = _read(region_log(region).directory / "checkpoint")
        if data is None:
            raise HTTPException(404, "this log has not published a checkpoint yet")
        return Response(data, media_type=CHECKPOINT_TYPE, headers={"Cache-Control": MUTABLE})

    @app.head("/log/{region}/tile/{path:path}", include_in_schema=False)
    @app.get("/log/{region}/tile/{path:path}", summary="A hash tile or entry bundle")
    def tile(region: str, path: str) -> Response:
        log = region_log(region)
        if not valid_tile_path(path):
            raise HTTPException(400, "not a tile path: tile/<L>/<N>[.p/<W>] or tile/entries/...")
        if path.count("/") > _MAX_INDEX_GROUPS + 1:
            raise HTTPException(404, "no such tile: an index has at most seven groups")
        data = _read(log.directory / "tile" / path)
        if data is None:
            raise HTTPException(404, f"no tile/{path}")
        return Response(data, media_type=TILE_TYPE, headers={"Cache-Control": IMMUTABLE})

    def region_witness(region: str) -> Witness:
        witness = region_log(region).witness
        if witness is None:
            raise HTTPException(
                404,
                f"region {region} runs no witness: its operator has configured no witness key",
            )
        return witness

    router = APIRouter()
    witness_routes(router, "/log/{region}", region_witness)
    app.include_router(router)
    return app
