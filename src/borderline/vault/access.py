"""Access events: what the vault writes to the transparency log before it releases a key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Justification(StrEnum):
    """Why a content key is released. Names follow Google's Key Access Justifications."""

    CUSTOMER_INITIATED_ACCESS = "CUSTOMER_INITIATED_ACCESS"
    CUSTOMER_INITIATED_SUPPORT = "CUSTOMER_INITIATED_SUPPORT"
    THIRD_PARTY_DATA_REQUEST = "THIRD_PARTY_DATA_REQUEST"
    PROVIDER_INITIATED_SYSTEM_OPERATION = "PROVIDER_INITIATED_SYSTEM_OPERATION"


class AccessLog(Protocol):
    """Where access events go: the region's transparency log (borderline.tlog)."""

    def append(self, entry: bytes) -> int: ...


def account_hash(address: str) -> str:
    """The account as the public log names it: a hash, so the log holds no address."""
    return hashlib.sha256(b"borderline-account-v1\n" + address.lower().encode()).hexdigest()


@dataclass(frozen=True)
class AccessEvent:
    region: str
    address: str
    justification: Justification
    principal: str
    time: datetime
    decision_id: str | None = None

    def to_entry(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces) so a revealed event hashes the same."""
        record: dict[str, str] = {
            "type": "access",
            "region": self.region,
            "account": account_hash(self.address),
            "justification": self.justification.value,
            "principal": self.principal,
            "time": self.time.isoformat(timespec="seconds"),
        }
        if self.decision_id is not None:
            record["decision"] = self.decision_id
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
