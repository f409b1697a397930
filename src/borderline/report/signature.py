"""A report's signature: a signed note over its hash and the checkpoints it was computed at.

    borderline-transparency-report/v1
    sha256 <hex digest of the published file>
    format html
    period 2026-01-01 2026-06-30
    checkpoint <origin> <size> <base64 root>      (one per region)

signed by the key of every region listed (key name = the region's log origin), the keys
that sign its checkpoints. The first line keeps the note from ever parsing as a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.report.transparency import Report
from borderline.tlog import Checkpoint, VerificationError, VerifierKey, open_note
from borderline.tlog.note import Note, b64decode, parse_decimal, parse_note, sign_text

HEADER = "borderline-transparency-report/v1"


@dataclass(frozen=True)
class ReportSignature:
    digest: str
    fmt: str
    start: date
    end: date
    checkpoints: tuple[Checkpoint, ...]


def signed_text(data: bytes, fmt: str, report: Report) -> str:
    lines = [
        HEADER,
        f"sha256 {hashlib.sha256(data).hexdigest()}",
        f"format {fmt}",
        f"period {report.start.isoformat()} {report.end.isoformat()}",
        *(
            f"checkpoint {log.origin} {log.size} {base64.b64encode(log.root).decode()}"
            for log in report.logs
        ),
    ]
    return "\n".join(lines) + "\n"


def sign_report(text: str, signers: Sequence[tuple[str, Ed25519PrivateKey]]) -> bytes:
    """The signature file: one note, a signature by each region's key."""
    return Note(text, tuple(sign_text(text, name, key) for name, key in signers)).encode()


def _parse(text: str) -> ReportSignature:
    lines = text.removesuffix("\n").split("\n")
    if len(lines) < 4 or lines[0] != HEADER:
        raise VerificationError(f"not a {HEADER} signature")
    try:
        _, digest = lines[1].split(" ")
        _, fmt = lines[2].split(" ")
        _, start, end = lines[3].split(" ")
        checkpoints = []
        for line in lines[4:]:
            word, origin, size, root = line.split(" ")
            if word != "checkpoint":
                raise ValueError(line)
            checkpoints.append(Checkpoint(origin, parse_decimal(size, "size"), b64decode(root)))
        return ReportSignature(
            digest, fmt, date.fromisoformat(start), date.fromisoformat(end), tuple(checkpoints)
        )
    except ValueError as exc:
        raise VerificationError(f"malformed report signature line: {exc}") from exc


def verify_report(data: bytes, signature: bytes, keys: Sequence[VerifierKey]) -> ReportSignature:
    """Check the file's hash and that every region listed signed, with the key given for
    its origin; returns what was signed, whose checkpoints the caller checks against the logs."""
    parsed = _parse(parse_note(signature).text)
    if hashlib.sha256(data).hexdigest() != parsed.digest:
        raise VerificationError("the report does not match its signature (hash differs)")
    by_origin = {k.name: k for k in keys}
    if not parsed.checkpoints:
        raise VerificationError("the signature names no region")
    for checkpoint in parsed.checkpoints:
        key = by_origin.get(checkpoint.origin)
        if key is None:
            raise VerificationError(f"no verifier key for {checkpoint.origin}")
        open_note(signature, [key])
    return parsed
