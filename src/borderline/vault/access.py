"""Access events: what the vault publishes on the transparency log, and what it keeps private.

Entry format 2 (docs/tlog.md, "Entries"). A public entry names no one: region, the minute,
the justification code, for a lawful release the public id of the legal request, and a
commitment `SHA-256(domain || salt || private record)` to the private record (account,
principal with its client address, staff, decision), which the home region keeps encrypted
under a key derived from the account's data key. The 32-byte random salt makes commitments
to the same account unlinkable; the account holder, given the salt and the record, checks the
commitment and the entry's inclusion proof.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

ENTRY_FORMAT = 2
_COMMITMENT = b"borderline-access-commitment-v2\n"
_SEAL = b"borderline-seal-commitment-v2\n"


class Justification(StrEnum):
    """Why a content key is released. Names follow Google's Key Access Justifications."""

    CUSTOMER_INITIATED_ACCESS = "CUSTOMER_INITIATED_ACCESS"
    CUSTOMER_INITIATED_SUPPORT = "CUSTOMER_INITIATED_SUPPORT"
    THIRD_PARTY_DATA_REQUEST = "THIRD_PARTY_DATA_REQUEST"
    PROVIDER_INITIATED_SYSTEM_OPERATION = "PROVIDER_INITIATED_SYSTEM_OPERATION"


class AccessLog(Protocol):
    """Where access events go: the region's transparency log (borderline.tlog)."""

    def append(self, entry: bytes) -> int: ...
    def close(self) -> None: ...


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces: the one encoding commitments are computed over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def account_hash(address: str) -> str:
    """How format-1 entries named the account: an unsalted hash, reversible by guessing
    addresses. Kept only to find an account's own format-1 entries; never written again."""
    return hashlib.sha256(b"borderline-account-v1\n" + address.lower().encode()).hexdigest()


def to_the_minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def commitment(salt: bytes, private_record: bytes) -> str:
    """The public commitment to a private record."""
    return hashlib.sha256(_COMMITMENT + salt + private_record).hexdigest()


def seal_commitment(salt: bytes, public_entry: bytes) -> str:
    """A nondisclosure seal: the commitment to an access entry published only at lapse."""
    return hashlib.sha256(_SEAL + salt + public_entry).hexdigest()


@dataclass(frozen=True)
class AccessEvent:
    """One key release: `private()` stays with the home region, `public()` goes on the log."""

    region: str
    address: str
    justification: Justification
    principal: str
    time: datetime
    decision_id: str | None = None
    request_id: str | None = None  # the public id of the legal request (lawful releases)

    def private(self, **extra: Any) -> bytes:
        """The private record: who, from where, on what decision, to the second."""
        record: dict[str, Any] = {
            "account": self.address.lower(),
            "principal": self.principal,
            "justification": self.justification.value,
            "time": self.time.astimezone(UTC).isoformat(timespec="seconds"),
            **extra,
        }
        if self.decision_id is not None:
            record["decision"] = self.decision_id
        return canonical_json(record)

    def public(self, committed_to: str) -> bytes:
        """The public entry: nothing in it names or links the account."""
        record: dict[str, Any] = {
            "type": "access",
            "v": ENTRY_FORMAT,
            "region": self.region,
            "time": to_the_minute(self.time),
            "justification": self.justification.value,
            "commitment": committed_to,
        }
        if self.request_id is not None:
            record["request"] = self.request_id
        return canonical_json(record)


def sealed_entry(region: str, sealed_commitment: str) -> bytes:
    return canonical_json(
        {
            "type": "sealed-access",
            "v": ENTRY_FORMAT,
            "region": region,
            "commitment": sealed_commitment,
        }
    )


def deletion_entry(region: str, moment: datetime) -> bytes:
    """An account of the region was deleted: which one, nobody can tell from the log."""
    return canonical_json(
        {
            "type": "account-deleted",
            "v": ENTRY_FORMAT,
            "region": region,
            "time": to_the_minute(moment),
        }
    )


def reveal_entry(index: int, salt: bytes | None, event: bytes) -> bytes:
    """Opens the seal at `index` with its salt. A seal written in format 1 committed to a
    record naming its principal, so it is opened to the account holder only (salt None)."""
    record: dict[str, Any] = {
        "type": "reveal",
        "v": ENTRY_FORMAT,
        "index": index,
        "event": json.loads(event),
    }
    if salt is None:
        record["legacy"] = True
    else:
        record["salt"] = salt.hex()
    return canonical_json(record)
