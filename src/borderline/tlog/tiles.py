"""C2SP tlog-tiles paths and entry-bundle encoding."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from borderline.tlog.errors import VerificationError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY = 0xFFFF
_LEN = struct.Struct(">H")


def encode_index(n: int) -> str:
    """Tile index as 3-digit path elements, all but the last prefixed with x."""
    if n < 0:
        raise ValueError("negative tile index")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """`tile/<L>/<N>[.p/<W>]`; level "entries" gives the entry bundle path."""
    if not 0 < width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} out of range")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def covered_paths(size: int) -> list[str]:
    """Every tile and entry bundle a checkpoint of `size` covers: what a mirror fetches."""
    paths, level, count = [], 0, size
    while count > 0:
        for start in range(0, count, TILE_WIDTH):
            width = min(count - start, TILE_WIDTH)
            paths.append(tile_path(level, start // TILE_WIDTH, width))
            if level == 0:
                paths.append(tile_path("entries", start // TILE_WIDTH, width))
        level, count = level + 1, count >> TILE_HEIGHT
    return paths


def encode_entries(entries: Sequence[bytes]) -> bytes:
    """Entry bundle body: each entry as big-endian uint16 length and its bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise ValueError(f"entry of {len(e)} bytes exceeds the {MAX_ENTRY}-byte limit")
        out += _LEN.pack(len(e))
        out += e
    return bytes(out)


def iter_entries(data: bytes | memoryview) -> Iterator[bytes]:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        if pos + 2 > len(view):
            raise VerificationError("entry bundle ends inside a length prefix")
        (n,) = _LEN.unpack_from(view, pos)
        if pos + 2 + n > len(view):
            raise VerificationError("entry bundle ends inside an entry")
        yield bytes(view[pos + 2 : pos + 2 + n])
        pos += 2 + n


def decode_entries(data: bytes | memoryview) -> list[bytes]:
    return list(iter_entries(data))
