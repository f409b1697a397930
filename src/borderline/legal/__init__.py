"""Legal requests: records, decisions, two-person review, holds, disclosure, notification."""

from borderline.legal.actions import ActionKind, StaffAction, StaffActionLog
from borderline.legal.desk import LegalDesk, refusal_note
from borderline.legal.package import PackageWriter, Verification, verify_package
from borderline.legal.records import (
    TRANSITIONS,
    HistoryEntry,
    ItemRecord,
    LegalError,
    LegalRecords,
    NotFoundError,
    Notification,
    RequestRecord,
    SignedAction,
    State,
    TransitionError,
    decision_id,
)

__all__ = [
    "TRANSITIONS",
    "ActionKind",
    "HistoryEntry",
    "ItemRecord",
    "LegalDesk",
    "LegalError",
    "LegalRecords",
    "NotFoundError",
    "Notification",
    "PackageWriter",
    "RequestRecord",
    "SignedAction",
    "StaffAction",
    "StaffActionLog",
    "State",
    "TransitionError",
    "Verification",
    "decision_id",
    "refusal_note",
    "verify_package",
]
