"""C2SP tlog-checkpoint: the signed statement of a log's size and root hash."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from borderline.tlog.errors import VerificationError
from borderline.tlog.merkle import HASH_SIZE
from borderline.tlog.note import VerifierKey, b64decode, open_note, parse_decimal

_MAX_SIZE = (1 << 64) - 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (already verified); strict, as the spec asks."""
    if not text.endswith("\n"):
        raise VerificationError("checkpoint text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise VerificationError("checkpoint needs origin, size and root lines")
    origin, size_text, root_text, *ext = lines
    size = parse_decimal(size_text, "checkpoint size")
    if size > _MAX_SIZE:
        raise VerificationError("checkpoint size out of range")
    root = b64decode(root_text)
    if len(root) != HASH_SIZE:
        raise VerificationError("checkpoint root is not a SHA-256 hash")
    return Checkpoint(origin, size, root, tuple(ext))


def verify_checkpoint(note: bytes, verifier_key: str | VerifierKey) -> Checkpoint:
    """Verify a signed checkpoint; the key name must equal the checkpoint origin."""
    key = VerifierKey.parse(verifier_key) if isinstance(verifier_key, str) else verifier_key
    checkpoint = parse_checkpoint(open_note(note, [key]).text)
    if checkpoint.origin != key.name:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not the key's log {key.name!r}"
        )
    return checkpoint
