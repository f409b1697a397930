"""Staff actions on a region's transparency log, naming no one (invariants 8 and 9).

Every step a person takes on a legal request is signed by them and recorded in the legal
records with who and when. The public log gets only that it happened: one JSON entry

    {"type": "staff-action", "v": 2, "region": "eu-dublin", "time": "2026-12-01T10:31Z",
     "action": "approve", "request": "req3", "commitment": "<hex sha256(salt || details)>"}

where `details` is the canonical JSON of the staff id, role, signed statement and signature.
The salt and the details stay with the region (`data_dir/<region>/staff/actions.sqlite`), so
the region can later prove to a court who did it (by revealing salt and details), while an
outsider learns nothing about the person and cannot link two entries to one person.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from borderline.durable_sqlite import open_durable
from borderline.legal.records import public_request_id
from borderline.staff import Signature, canonical_json
from borderline.vault import AccessLog

ENTRY_TYPE = "staff-action"


class ActionKind(StrEnum):
    SUBMIT = "submit"
    DECIDE = "decide"
    APPROVE = "approve"
    REJECT = "reject"
    EXPORT = "export"
    CLOSE = "close"
    NOTIFY = "notify"
    HOLD_EXTEND = "hold-extend"
    HOLD_RELEASE = "hold-release"


@dataclass(frozen=True)
class StaffAction:
    kind: ActionKind
    request_id: int
    signature: Signature
    at: datetime


def log_entry(action: StaffAction, region: str, commitment: str) -> bytes:
    """The public entry: no name, no staff id, no signature; the time to the minute."""
    return canonical_json(
        {
            "type": ENTRY_TYPE,
            "v": 2,
            "region": region,
            "time": action.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            "action": action.kind.value,
            "request": public_request_id(action.request_id),
            "commitment": commitment,
        }
    )


class StaffActionLog:
    """One region's staff actions: a commitment on its transparency log, the opening kept
    privately by the region."""

    def __init__(self, region: str, log: AccessLog, private: Path) -> None:
        self.region = region
        self._log = log
        self._lock = threading.Lock()
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = open_durable(private)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS actions (log_index INTEGER PRIMARY KEY,"
                " salt BLOB NOT NULL, details BLOB NOT NULL)"
            )

    def append(self, action: StaffAction) -> int:
        """Log the action; returns its index on the region's log."""
        salt = secrets.token_bytes(32)
        details = canonical_json(action.signature.to_json())
        commitment = hashlib.sha256(salt + details).hexdigest()
        with self._lock:
            index = self._log.append(log_entry(action, self.region, commitment))
            with self._db:
                self._db.execute(
                    "INSERT INTO actions (log_index, salt, details) VALUES (?, ?, ?)",
                    (index, salt, details),
                )
        return index

    def opening(self, log_index: int) -> tuple[bytes, bytes] | None:
        """The salt and details behind a commitment, for the region to show a court."""
        with self._lock:
            row = self._db.execute(
                "SELECT salt, details FROM actions WHERE log_index = ?", (log_index,)
            ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def close(self) -> None:
        self._db.close()
