"""Vault: encryption at rest, logged release, justification rules, HPKE sealing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.tlog import TransparencyLog
from borderline.vault import (
    Justification,
    KeyReleaseDenied,
    SealedMessageError,
    Vault,
    open_sealed,
    seal,
)
from borderline.vault.access import account_hash


def make_vault(root: Path) -> Vault:
    vault = Vault(
        "eu-dublin",
        root / "vault",
        lambda signer: TransparencyLog(root / "log", "example.test/eu-dublin", signer),
    )
    vault.create_account_key("alice@example.test")
    return vault


def test_release_is_logged_before_the_key_leaves(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    blob = vault.encrypt("alice@example.test", b"Subject: secret\r\n\r\nbody")
    assert b"secret" not in blob
    log = vault.access_log
    assert isinstance(log, TransparencyLog)
    assert log.size == 0
    key = vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap")
    assert key.decrypt(blob).endswith(b"body")
    assert log.size == 1
    event = json.loads(log.entry(key.log_index))
    assert event["justification"] == "CUSTOMER_INITIATED_ACCESS"
    assert event["account"] == account_hash("alice@example.test")
    assert "alice" not in log.entry(0).decode()


def test_release_rules(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    with pytest.raises(KeyReleaseDenied, match="approved decision"):
        vault.release("alice@example.test", Justification.THIRD_PARTY_DATA_REQUEST, "legal")
    with pytest.raises(KeyReleaseDenied, match="not a justification"):
        vault.release("alice@example.test", "BECAUSE", "x")  # type: ignore[arg-type]
    with pytest.raises(KeyReleaseDenied, match="no data key"):
        vault.release("mallory@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "x")
    key = vault.release(
        "alice@example.test", Justification.THIRD_PARTY_DATA_REQUEST, "legal", decision_id="D-1"
    )
    assert json.loads(vault.access_log.entry(key.log_index))["decision"] == "D-1"  # type: ignore[attr-defined]


def test_other_account_key_cannot_decrypt(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    vault.create_account_key("bob@example.test")
    blob = vault.encrypt("alice@example.test", b"for alice")
    key = vault.release("bob@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "x")
    with pytest.raises(ValueError, match="fails authentication"):
        key.decrypt(blob)


def test_sealed_event_is_a_commitment_then_revealed(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    key = vault.release(
        "alice@example.test",
        Justification.THIRD_PARTY_DATA_REQUEST,
        "legal",
        decision_id="D-9",
        sealed_until=date(2030, 1, 1),
    )
    log = vault.access_log
    committed = json.loads(log.entry(key.log_index))  # type: ignore[attr-defined]
    assert committed["type"] == "sealed-access" and "decision" not in committed
    assert vault.reveal_lapsed(date(2029, 12, 31)) == []
    [reveal_index] = vault.reveal_lapsed(date(2030, 1, 1))
    reveal = json.loads(log.entry(reveal_index))  # type: ignore[attr-defined]
    import hashlib

    preimage = json.dumps(reveal["event"], sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(bytes.fromhex(reveal["salt"]) + preimage).hexdigest()
    assert digest == committed["commitment"]
    assert reveal["event"]["decision"] == "D-9"
    assert vault.reveal_lapsed(date(2031, 1, 1)) == [], "revealed once only"


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    blob = vault.encrypt("alice@example.test", b"persisted")
    public = vault.sealing_public_key
    vault.close()
    vault.access_log.close()  # type: ignore[attr-defined]
    again = make_vault(tmp_path)
    assert again.sealing_public_key == public
    key = again.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "x")
    assert key.decrypt(blob) == b"persisted"


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_sealing_round_trip_and_region_binding(plaintext: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    sealed = seal(public, "eu-dublin", plaintext)
    assert open_sealed(private, "eu-dublin", sealed) == plaintext
    with pytest.raises(SealedMessageError):
        open_sealed(private, "us-east", sealed)
    with pytest.raises(SealedMessageError):
        open_sealed(X25519PrivateKey.generate(), "eu-dublin", sealed)


def test_a_message_in_pieces_is_encrypted_as_one(tmp_path: Path) -> None:
    """Small or large (streamed without a copy), the blob opens to the pieces joined."""
    vault = make_vault(tmp_path)
    key = vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "test")
    for body in (b"small body\r\n", b"x" * (3 << 20)):
        pieces = (b"Return-Path: <>\r\n", b"", b"Received: by us\r\n", body)
        assert key.decrypt(vault.encrypt("alice@example.test", *pieces)) == b"".join(pieces)
