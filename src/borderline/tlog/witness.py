"""C2SP tlog-witness add-checkpoint, as pure logic: the HTTP layer maps errors to statuses."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog.checkpoint import Checkpoint, parse_checkpoint
from borderline.tlog.errors import TlogError, VerificationError
from borderline.tlog.files import write_atomic
from borderline.tlog.merkle import HASH_SIZE, verify_consistency
from borderline.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    VerifierKey,
    b64decode,
    cosign,
    open_note,
    parse_decimal,
    parse_note,
    split_preamble,
)

MAX_PROOF_LINES = 63


class WitnessError(TlogError):
    """A rejected add-checkpoint request; `status` is the spec's HTTP status code."""

    status = 400

    def __init__(self, message: str, latest_size: int | None = None) -> None:
        super().__init__(message)
        self.latest_size = latest_size


class BadRequest(WitnessError):
    status = 400


class Forbidden(WitnessError):
    status = 403


class UnknownLog(WitnessError):
    status = 404


class Conflict(WitnessError):
    """Old size does not match, or same size with another root. Body: latest size + LF."""

    status = 409


class InvalidProof(WitnessError):
    status = 422


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The add-checkpoint request body a log sends to a witness."""
    lines = [f"old {old_size}", *(b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n").encode() + note


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    try:
        lines, note = split_preamble(body, "request")
        if not lines[0].startswith("old "):
            raise VerificationError("request must start with an old size line")
        old_size = parse_decimal(lines[0][len("old ") :], "old size")
    except VerificationError as exc:
        raise BadRequest(str(exc)) from exc
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise BadRequest("too many consistency proof lines")
    try:
        proof = tuple(b64decode(line) for line in lines[1:])
    except VerificationError as exc:
        raise BadRequest(str(exc)) from exc
    if any(len(h) != HASH_SIZE for h in proof):
        raise BadRequest("consistency proof hash has the wrong length")
    return AddCheckpoint(old_size, proof, note)


class Witness:
    """Cosigns checkpoints of known logs that extend the last one it cosigned.

    State (latest cosigned checkpoint per origin) is persisted atomically before a
    cosignature is returned, when `state_path` is given.
    """

    def __init__(
        self,
        name: str,
        signer: Ed25519PrivateKey,
        logs: Mapping[str, str | VerifierKey],
        state_path: pathlib.Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self._signer = signer
        self._vkey = VerifierKey.for_key(name, signer, COSIGNATURE_V1)
        self._logs = {
            origin: VerifierKey.parse(k) if isinstance(k, str) else k for origin, k in logs.items()
        }
        if any(k.alg != ED25519 for k in self._logs.values()):
            raise ValueError("log keys must be Ed25519 note keys")
        self._state_path = state_path
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, Checkpoint] = {}
        if state_path is not None and state_path.exists():
            for origin, text in json.loads(state_path.read_text()).items():
                self._latest[origin] = parse_checkpoint(text)

    def verifier_key(self) -> str:
        return str(self._vkey)

    def latest(self, origin: str) -> Checkpoint | None:
        with self._lock:
            return self._latest.get(origin)

    def add_checkpoint(self, body: bytes) -> bytes:
        """Handle an add-checkpoint request body; returns the cosignature line(s)."""
        req = parse_add_checkpoint(body)
        return self.cosign(req.old_size, req.proof, req.note)

    def cosign(self, old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
        try:
            parsed = parse_note(note)
            checkpoint = parse_checkpoint(parsed.text)
        except VerificationError as exc:
            raise BadRequest(f"malformed checkpoint: {exc}") from exc
        key = self._logs.get(checkpoint.origin)
        if key is None:
            raise UnknownLog(f"unknown log {checkpoint.origin!r}")
        try:
            open_note(note, [key])
        except VerificationError as exc:
            raise Forbidden(f"checkpoint not signed by the log: {exc}") from exc
        if old_size > checkpoint.size:
            raise BadRequest("old size is larger than the checkpoint size")
        with self._lock:
            latest = self._latest.get(checkpoint.origin)
            latest_size = latest.size if latest else 0
            if old_size != latest_size:
                raise Conflict(f"witness is at size {latest_size}", latest_size)
            if latest is not None and old_size == checkpoint.size:
                if latest.root != checkpoint.root:
                    raise Conflict("same size, different root: log equivocation", latest_size)
            elif latest is not None:
                try:
                    verify_consistency(
                        latest.size, checkpoint.size, latest.root, checkpoint.root, proof
                    )
                except VerificationError as exc:
                    raise InvalidProof(f"checkpoint is not consistent: {exc}") from exc
            elif proof:
                raise InvalidProof("the proof from size 0 must be empty")
            self._persist({**self._latest, checkpoint.origin: checkpoint})
            self._latest[checkpoint.origin] = checkpoint
            sig = cosign(parsed.text, self._name, self._signer, int(self._clock()))
        return sig.line().encode()

    def _persist(self, state: Mapping[str, Checkpoint]) -> None:
        if self._state_path is None:
            return
        data = json.dumps({o: c.text() for o, c in sorted(state.items())}, indent=1)
        write_atomic(self._state_path, data.encode(), sync=True)
