"""The residency check: does a marker string appear in plaintext anywhere under a folder?"""

from __future__ import annotations

from pathlib import Path

CHUNK = 1 << 20


def _contains(path: Path, marker: bytes) -> bool:
    """Streamed, so multi-GB stores are scanned without loading them whole."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if marker in tail + chunk:
                return True
            tail = chunk[-(len(marker) - 1) :] if len(marker) > 1 else b""
    return False


def files_containing(root: Path, marker: bytes) -> list[Path]:
    """Every file (databases, WAL, logs, queues, keys) under root holding the marker."""
    return [p for p in sorted(root.rglob("*")) if p.is_file() and _contains(p, marker)]
