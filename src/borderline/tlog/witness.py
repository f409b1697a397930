"""C2SP tlog-witness add-checkpoint, as pure logic: the HTTP layer maps errors to statuses."""

from __future__ import annotations

import hashlib
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
from borderline.tlog.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from borderline.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    Note,
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
    """The old size is not the size the witness last cosigned. Body: that size + LF."""

    status = 409


class InvalidProof(WitnessError):
    """Not consistent with what the witness cosigned (or, at size 0, not the empty tree)."""

    status = 422


def origin_hash(origin: str) -> str:
    """A log's path element on a witness's monitoring prefix: hex SHA-256 of its origin."""
    return hashlib.sha256(origin.encode()).hexdigest()


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

    State (per origin, the latest cosigned checkpoint: the log's signature and this
    witness's cosignature) is persisted atomically before a cosignature is returned, when
    `state_path` is given; it is what the monitoring endpoint serves.
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
        self._notes: dict[str, bytes] = {}
        if state_path is not None and state_path.exists():
            for origin, value in json.loads(state_path.read_text()).items():
                if "\n\n" in value:  # a cosigned note; older state files hold the text only
                    self._notes[origin] = value.encode()
                    value = parse_note(value.encode()).text
                self._latest[origin] = parse_checkpoint(value)

    @property
    def name(self) -> str:
        return self._name

    def verifier_key(self) -> str:
        return str(self._vkey)

    def latest(self, origin: str) -> Checkpoint | None:
        with self._lock:
            return self._latest.get(origin)

    def latest_note(self, origin: str) -> bytes | None:
        """The latest checkpoint cosigned for `origin`, with the log's signature and this
        witness's cosignature (tlog-witness monitoring: `<prefix>/<origin hash>/checkpoint`)."""
        with self._lock:
            return self._notes.get(origin)

    def latest_note_by_hash(self, digest: str) -> bytes | None:
        origin = next((o for o in self._logs if origin_hash(o) == digest), None)
        return None if origin is None else self.latest_note(origin)

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
            _check_extends(latest, checkpoint, proof)
            sig = cosign(parsed.text, self._name, self._signer, int(self._clock()))
            log_sigs = [
                s for s in parsed.signatures if (s.name, s.key_id) == (key.name, key.key_id)
            ]
            kept = Note(parsed.text, (*log_sigs, sig)).encode()
            self._persist({**self._notes, checkpoint.origin: kept})
            self._latest[checkpoint.origin] = checkpoint
            self._notes[checkpoint.origin] = kept
        return sig.line().encode()

    def _persist(self, notes: Mapping[str, bytes]) -> None:
        if self._state_path is None:
            return
        data = json.dumps({o: n.decode() for o, n in sorted(notes.items())}, indent=1)
        write_atomic(self._state_path, data.encode(), sync=True)


def _check_extends(latest: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """tlog-witness: the empty tree at size 0, an empty proof from 0, equal roots at equal
    sizes, and otherwise a consistency proof from the cosigned checkpoint; else 422."""
    if new.size == 0 and new.root != EMPTY_ROOT:
        raise InvalidProof("a checkpoint of size 0 must have the root of the empty tree")
    if latest is None or latest.size == 0:
        if proof:
            raise InvalidProof("the proof from size 0 must be empty")
        return
    if latest.size == new.size:
        if latest.root != new.root or proof:
            raise InvalidProof("same size, different root: log equivocation")
        return
    try:
        verify_consistency(latest.size, new.size, latest.root, new.root, proof)
    except VerificationError as exc:
        raise InvalidProof(f"checkpoint is not consistent: {exc}") from exc
