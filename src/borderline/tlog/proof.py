"""C2SP tlog-proof: an entry's inclusion proof bundled with a signed checkpoint."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from borderline.tlog.checkpoint import Checkpoint, verify_checkpoint
from borderline.tlog.errors import VerificationError
from borderline.tlog.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from borderline.tlog.note import (
    VerifierKey,
    b64decode,
    parse_decimal,
    split_preamble,
    verify_cosignature,
)

HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class Receipt:
    index: int
    proof: tuple[bytes, ...]
    note: bytes
    extra: bytes | None = None


@dataclass(frozen=True)
class VerifiedReceipt:
    index: int
    checkpoint: Checkpoint
    extra: bytes | None
    cosigners: tuple[str, ...]


def format_receipt(
    index: int, proof: Sequence[bytes], note: bytes, extra: bytes | None = None
) -> bytes:
    lines = [HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines.extend(base64.b64encode(h).decode() for h in proof)
    return ("\n".join(lines) + "\n\n").encode() + note


def parse_receipt(data: bytes) -> Receipt:
    lines, note = split_preamble(data, "proof")
    if lines[0] != HEADER:
        raise VerificationError(f"not a {HEADER} proof")
    pos, extra = 1, None
    if len(lines) > pos and lines[pos].startswith("extra "):
        extra = b64decode(lines[pos][len("extra ") :])
        pos += 1
    if len(lines) <= pos or not lines[pos].startswith("index "):
        raise VerificationError("proof has no index line")
    index = parse_decimal(lines[pos][len("index ") :], "proof index")
    proof = tuple(b64decode(line) for line in lines[pos + 1 :])
    if any(len(h) != HASH_SIZE for h in proof):
        raise VerificationError("proof hash has the wrong length")
    return Receipt(index, proof, note, extra)


def verify_receipt(
    receipt: bytes,
    verifier_key: str | VerifierKey,
    entry: bytes,
    witness_keys: Sequence[str | VerifierKey] = (),
    quorum: int = 0,
) -> VerifiedReceipt:
    """Check offline that `entry` is in the log, optionally cosigned by `quorum` witnesses."""
    parsed = parse_receipt(receipt)
    checkpoint = verify_checkpoint(parsed.note, verifier_key)
    verify_inclusion(leaf_hash(entry), parsed.index, checkpoint.size, parsed.proof, checkpoint.root)
    cosigners = []
    for wk in witness_keys:
        key = VerifierKey.parse(wk) if isinstance(wk, str) else wk
        try:
            verify_cosignature(parsed.note, key)
        except VerificationError:
            continue
        cosigners.append(key.name)
    if len(cosigners) < quorum:
        raise VerificationError(f"{len(cosigners)} witness cosignatures, {quorum} required")
    return VerifiedReceipt(parsed.index, checkpoint, parsed.extra, tuple(cosigners))
