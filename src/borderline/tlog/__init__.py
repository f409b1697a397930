"""Borderline's transparency log: RFC 9162 Merkle tree, C2SP tiles, checkpoints and proofs."""

from borderline.tlog.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from borderline.tlog.errors import CorruptLogError, LogLockedError, TlogError, VerificationError
from borderline.tlog.log import TransparencyLog
from borderline.tlog.merkle import (
    EMPTY_ROOT,
    HashTree,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)
from borderline.tlog.note import VerifierKey, open_note, sign_note, verify_cosignature
from borderline.tlog.proof import Receipt, VerifiedReceipt, parse_receipt, verify_receipt
from borderline.tlog.verify import verify_directory
from borderline.tlog.witness import (
    Witness,
    WitnessError,
    format_add_checkpoint,
    parse_add_checkpoint,
)

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "CorruptLogError",
    "HashTree",
    "LogLockedError",
    "Receipt",
    "TlogError",
    "TransparencyLog",
    "VerificationError",
    "VerifiedReceipt",
    "VerifierKey",
    "Witness",
    "WitnessError",
    "format_add_checkpoint",
    "leaf_hash",
    "node_hash",
    "open_note",
    "parse_add_checkpoint",
    "parse_checkpoint",
    "parse_receipt",
    "root_from_inclusion",
    "sign_note",
    "verify_checkpoint",
    "verify_consistency",
    "verify_cosignature",
    "verify_directory",
    "verify_inclusion",
    "verify_receipt",
]
