"""Legal requests: records, decisions, two-person review, holds, disclosure, notification."""

from borderline.legal.desk import LegalDesk, refusal_note
from borderline.legal.package import PackageWriter, Verification, verify_package
from borderline.legal.records import (
    TRANSITIONS,
    HistoryEntry,
    ItemRecord,
    LegalError,
    LegalRecords,
    Notification,
    RequestRecord,
    State,
    TransitionError,
    decision_id,
)

__all__ = [
    "TRANSITIONS",
    "HistoryEntry",
    "ItemRecord",
    "LegalDesk",
    "LegalError",
    "LegalRecords",
    "Notification",
    "PackageWriter",
    "RequestRecord",
    "State",
    "TransitionError",
    "Verification",
    "decision_id",
    "refusal_note",
    "verify_package",
]
