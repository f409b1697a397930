"""Offline verification of a log directory from its tiles, entry bundles and checkpoint."""

from __future__ import annotations

import pathlib

from borderline.tlog.checkpoint import Checkpoint, verify_checkpoint
from borderline.tlog.errors import VerificationError
from borderline.tlog.log import CHECKPOINT
from borderline.tlog.merkle import HASH_SIZE, HashTree, leaf_hash, verify_consistency
from borderline.tlog.note import VerifierKey
from borderline.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, decode_entries, tile_path


def _read(root: pathlib.Path, rel: str) -> bytes:
    try:
        return (root / rel).read_bytes()
    except FileNotFoundError as exc:
        raise VerificationError(f"missing {rel}") from exc


def _width(start: int, size: int) -> int:
    return min(size - start, TILE_WIDTH)


def load_tree(root: pathlib.Path, size: int) -> HashTree:
    """Rebuild the tree of `size` entries from entry bundles, checking every tile against it.

    Each entry bundle must hash to its level-0 tile, and each upper tile must hold the
    subtree hashes of the tiles below, so a changed byte anywhere is caught here or at the
    root comparison.
    """
    tree = HashTree()
    for start in range(0, size, TILE_WIDTH):
        width = _width(start, size)
        rel = tile_path("entries", start // TILE_WIDTH, width)
        entries = decode_entries(_read(root, rel))
        if len(entries) != width:
            raise VerificationError(f"{rel} holds {len(entries)} entries, not {width}")
        hashes = [leaf_hash(e) for e in entries]
        tree.extend(hashes)
    level = 0
    while (count := size >> (level * TILE_HEIGHT)) > 0:
        for start in range(0, count, TILE_WIDTH):
            width = _width(start, count)
            rel = tile_path(level, start // TILE_WIDTH, width)
            data = _read(root, rel)
            if len(data) != width * HASH_SIZE:
                raise VerificationError(f"{rel} has {len(data)} bytes, not {width * HASH_SIZE}")
            expected = tree.level_bytes(level * TILE_HEIGHT, start, start + width)
            if data != expected:
                raise VerificationError(f"{rel} does not match the hashes below it")
        level += 1
    return tree


def verify_directory(
    path: pathlib.Path,
    verifier_key: str | VerifierKey,
    old_checkpoint: bytes | None = None,
) -> Checkpoint:
    """Verify the signed checkpoint of a tiled log and every tile and entry it covers.

    With `old_checkpoint`, also prove that the current checkpoint extends that older one.
    Tiles beyond the checkpoint size are not covered by any signature and are not checked.
    """
    root = pathlib.Path(path)
    checkpoint = verify_checkpoint(_read(root, CHECKPOINT), verifier_key)
    tree = load_tree(root, checkpoint.size)
    if tree.root() != checkpoint.root:
        raise VerificationError("tiles do not reproduce the checkpoint root")
    if old_checkpoint is not None:
        old = verify_checkpoint(old_checkpoint, verifier_key)
        if old.size > checkpoint.size:
            raise VerificationError("the saved checkpoint is newer than the directory's")
        proof = tree.consistency_proof(old.size, checkpoint.size)
        verify_consistency(old.size, checkpoint.size, old.root, checkpoint.root, proof)
    return checkpoint
