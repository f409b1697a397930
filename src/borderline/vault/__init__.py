"""Keys: region KEK, per-account data keys, HPKE sealing, and justified, logged release."""

from borderline.vault.access import AccessEvent, AccessLog, Justification
from borderline.vault.sealing import SealedMessageError, open_sealed, seal, seal_in_place
from borderline.vault.vault import (
    AccessLogUnavailable,
    AccessRecord,
    ContentKey,
    DkimKey,
    KeyReleaseDenied,
    Vault,
)

__all__ = [
    "AccessEvent",
    "AccessLog",
    "AccessLogUnavailable",
    "AccessRecord",
    "ContentKey",
    "DkimKey",
    "Justification",
    "KeyReleaseDenied",
    "SealedMessageError",
    "Vault",
    "open_sealed",
    "seal",
    "seal_in_place",
]
