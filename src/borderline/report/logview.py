"""A region's transparency log as anyone can read it: the published checkpoint and tiles.

Everything here works from the files alone (the directory a server publishes, or a copy
fetched over HTTP), so the same code serves an operator, a user and an outside auditor,
and it works while `borderline serve` holds the log open.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from borderline.tlog import Checkpoint, VerificationError, VerifierKey, verify_checkpoint
from borderline.tlog.log import CHECKPOINT
from borderline.tlog.merkle import HashTree
from borderline.tlog.note import ED25519
from borderline.tlog.proof import format_receipt
from borderline.tlog.tiles import TILE_WIDTH, decode_entries, tile_path
from borderline.tlog.verify import load_tree
from borderline.vault.access import ENTRY_FORMAT, canonical_json, seal_commitment

ACCESS_TYPES = ("access", "sealed-access", "reveal")


def region_verifier_key(origin: str, signing_public_key: bytes) -> VerifierKey:
    """The note verifier key of a region's log, from the public key the directory publishes."""
    return VerifierKey(origin, ED25519, signing_public_key)


@dataclass(frozen=True)
class Format1Details:
    """What a format-1 entry (written before entries stopped naming anyone) published: an
    unsalted account hash and the principal in clear. They stay: a Merkle log cannot forget."""

    account: str
    principal: str


@dataclass(frozen=True)
class LogEvent:
    """One access event, as logged (`access`) or as revealed after a nondisclosure order."""

    index: int  # where the event's own record is: the access entry, or the reveal entry
    region: str
    justification: str
    time: datetime
    request: str | None  # public id of the legal request (format 1: the decision id it named)
    commitment: str | None  # to the private record; None in format 1
    sealed_index: int | None  # for a revealed event: the index of its seal
    format1: Format1Details | None = None

    @classmethod
    def from_record(
        cls, index: int, record: dict[str, Any], sealed_index: int | None = None
    ) -> LogEvent:
        current = record.get("v") == ENTRY_FORMAT
        try:
            request = record.get("request" if current else "decision")
            return cls(
                index=index,
                region=str(record["region"]),
                justification=str(record["justification"]),
                time=datetime.fromisoformat(str(record["time"])),
                request=None if request is None else str(request),
                commitment=str(record["commitment"]) if current else None,
                sealed_index=sealed_index,
                format1=None
                if current
                else Format1Details(str(record["account"]), str(record["principal"])),
            )
        except (KeyError, ValueError) as exc:
            raise VerificationError(f"entry {index} is not a valid access event: {exc}") from exc


@dataclass(frozen=True)
class LogSnapshot:
    """A verified, immutable view of a log at its published checkpoint."""

    directory: pathlib.Path
    verifier_key: VerifierKey
    note: bytes
    checkpoint: Checkpoint
    tree: HashTree
    entries: tuple[bytes, ...]

    @classmethod
    def load(cls, directory: pathlib.Path, verifier_key: str | VerifierKey) -> LogSnapshot:
        """Read and verify the checkpoint, every tile and every entry bundle it covers."""
        directory = pathlib.Path(directory)
        if isinstance(verifier_key, str):
            verifier_key = VerifierKey.parse(verifier_key)
        try:
            note = (directory / CHECKPOINT).read_bytes()
        except FileNotFoundError as exc:
            raise VerificationError(f"{directory} has no published checkpoint") from exc
        checkpoint = verify_checkpoint(note, verifier_key)
        tree = load_tree(directory, checkpoint.size)
        if tree.root() != checkpoint.root:
            raise VerificationError("tiles do not reproduce the checkpoint root")
        entries: list[bytes] = []
        for start in range(0, checkpoint.size, TILE_WIDTH):
            width = min(checkpoint.size - start, TILE_WIDTH)
            bundle = directory / tile_path("entries", start // TILE_WIDTH, width)
            entries.extend(decode_entries(bundle.read_bytes()))
        return cls(directory, verifier_key, note, checkpoint, tree, tuple(entries))

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def receipt(self, index: int) -> bytes:
        """C2SP tlog-proof of entry `index` against this snapshot's signed checkpoint."""
        if not 0 <= index < self.size:
            raise IndexError(f"no entry {index} under the checkpoint of size {self.size}")
        return format_receipt(index, self.tree.inclusion_proof(index, self.size), self.note)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every entry decoded as the vault's JSON record; other entries are skipped. Once
        an entry of format 2 appears, a later format-1 entry is a downgrade and refused."""
        first_v2: int | None = None
        for index, entry in enumerate(self.entries):
            try:
                record = json.loads(entry)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("v") == ENTRY_FORMAT:
                first_v2 = index if first_v2 is None else first_v2
            elif first_v2 is not None and record.get("type") in ACCESS_TYPES:
                raise VerificationError(
                    f"entry {index} is in format 1, after format 2 began at entry {first_v2}"
                )
            yield index, record

    @property
    def format1_entries(self) -> int:
        """How many entries predate format 2 (they may name accounts and principals)."""
        return sum(1 for _, r in self.records() if r.get("type") in ACCESS_TYPES and "v" not in r)

    def sealed_indices(self) -> list[int]:
        return [i for i, r in self.records() if r.get("type") == "sealed-access"]

    def revealed(self) -> dict[int, LogEvent]:
        """Seal index -> revealed event, each reveal checked against its seal (a format-1
        seal is opened to the account holder only: its reveal carries no salt)."""
        out: dict[int, LogEvent] = {}
        for index, record in self.records():
            if record.get("type") != "reveal":
                continue
            sealed_index = record.get("index")
            if not isinstance(sealed_index, int) or not 0 <= sealed_index < index:
                raise VerificationError(f"reveal {index} names no earlier entry")
            sealed = json.loads(self.entries[sealed_index])
            if not isinstance(sealed, dict) or sealed.get("type") != "sealed-access":
                raise VerificationError(f"reveal {index} names entry {sealed_index}, not a seal")
            if sealed_index in out:
                raise VerificationError(f"reveal {index} opens seal {sealed_index} again")
            event = record.get("event")
            if not isinstance(event, dict):
                raise VerificationError(f"reveal {index} carries no event")
            if not _opens(record, sealed, event):
                raise VerificationError(f"reveal {index} does not match the seal at {sealed_index}")
            out[sealed_index] = LogEvent.from_record(index, event, sealed_index)
        return out

    def events(self) -> list[LogEvent]:
        """Every access event visible in the log: logged openly or revealed, by index."""
        events = [
            LogEvent.from_record(i, r) for i, r in self.records() if r.get("type") == "access"
        ]
        events.extend(self.revealed().values())
        return sorted(events, key=lambda e: e.index)


def _opens(reveal: dict[str, Any], sealed: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether a reveal opens its seal: format 2 with the seal domain, format 1 as it was."""
    if reveal.get("v") == ENTRY_FORMAT and sealed.get("v") == ENTRY_FORMAT:
        if reveal.get("legacy"):
            return False  # a format-2 seal is always opened in public
        try:
            salt = bytes.fromhex(str(reveal.get("salt", "")))
        except ValueError:
            return False
        return seal_commitment(salt, canonical_json(event)) == sealed.get("commitment")
    if reveal.get("v") == ENTRY_FORMAT:
        # A format-1 seal opened to the account holder only: the public event is format 2
        # and names no one; its private record carries the old salt and preimage.
        return reveal.get("legacy") is True and event.get("v") == ENTRY_FORMAT
    try:
        salt = bytes.fromhex(str(reveal.get("salt", "")))
    except ValueError:
        return False
    return hashlib.sha256(salt + canonical_json(event)).hexdigest() == sealed.get("commitment")
