"""Vault: encryption at rest, logged release, justification rules, HPKE sealing."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

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
    seal_in_place,
)
from borderline.vault.access import account_hash, canonical_json, commitment, seal_commitment
from borderline.vault.sealing import open_in_place


def make_vault(root: Path) -> Vault:
    vault = Vault(
        "eu-dublin",
        root / "vault",
        lambda signer: TransparencyLog(root / "log", "example.test/eu-dublin", signer),
    )
    vault.create_account_key("alice@example.test")
    return vault


def entry(vault: Vault, index: int) -> dict[str, Any]:
    log = vault.access_log
    assert isinstance(log, TransparencyLog)
    record: dict[str, Any] = json.loads(log.entry(index))
    return record


def test_release_is_logged_before_the_key_leaves(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    blob = vault.encrypt("alice@example.test", b"Subject: secret\r\n\r\nbody")
    assert b"secret" not in blob
    log = vault.access_log
    assert isinstance(log, TransparencyLog)
    assert log.size == 0
    key = vault.release(
        "alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap:alice@203.0.113.9"
    )
    assert key.decrypt(blob).endswith(b"body")
    assert log.size == 1
    event = entry(vault, key.log_index)
    assert sorted(event) == ["commitment", "justification", "region", "time", "type", "v"]
    assert event["justification"] == "CUSTOMER_INITIATED_ACCESS" and event["v"] == 2
    assert len(event["time"]) == len("2026-01-01T10:00Z"), "to the minute"
    raw = log.entry(0).decode()
    for personal in ("alice", "203.0.113.9", account_hash("alice@example.test")):
        assert personal not in raw


def test_the_account_holder_opens_the_commitment(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    keys = [
        vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, f"imap:{n}")
        for n in range(2)
    ]
    records = vault.access_records("alice@example.test", date.today())
    assert [r.fields["principal"] for r in records] == ["imap:0", "imap:1"]
    for key, record in zip(keys, records, strict=True):
        assert record.opens()
        assert entry(vault, key.log_index)["commitment"] == record.commitment
        assert record.fields["account"] == "alice@example.test"
    # Two accesses to one account share nothing an outsider could link them by.
    first, second = (entry(vault, k.log_index) for k in keys)
    assert first["commitment"] != second["commitment"]
    assert commitment(records[0].salt, records[1].record) != records[1].commitment
    vault.create_account_key("bob@example.test")
    assert vault.access_records("bob@example.test", date.today()) == []


def test_release_rules(tmp_path: Path) -> None:
    vault = make_vault(tmp_path)
    with pytest.raises(KeyReleaseDenied, match="approved decision"):
        vault.release("alice@example.test", Justification.THIRD_PARTY_DATA_REQUEST, "legal")
    with pytest.raises(KeyReleaseDenied, match="public id"):
        vault.release(
            "alice@example.test", Justification.THIRD_PARTY_DATA_REQUEST, "legal", decision_id="D"
        )
    with pytest.raises(KeyReleaseDenied, match="not a justification"):
        vault.release("alice@example.test", "BECAUSE", "x")  # type: ignore[arg-type]
    with pytest.raises(KeyReleaseDenied, match="no data key"):
        vault.release("mallory@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "x")
    key = vault.release(
        "alice@example.test",
        Justification.THIRD_PARTY_DATA_REQUEST,
        "Dana Okafor (legal), Eli Brandt (security)",
        decision_id="req7-item1",
        request_id="req7",
    )
    public = entry(vault, key.log_index)
    assert public["request"] == "req7" and "decision" not in public
    assert "Okafor" not in json.dumps(public)
    [record] = vault.access_records("alice@example.test", date.today())
    assert record.fields["decision"] == "req7-item1"
    assert "Okafor" in record.fields["principal"]


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
        "Dana Okafor (legal)",
        decision_id="req9-item1",
        request_id="req9",
        sealed_until=date(2030, 1, 1),
    )
    sealed = entry(vault, key.log_index)
    assert sorted(sealed) == ["commitment", "region", "type", "v"]
    assert vault.access_records("alice@example.test", date(2029, 12, 31)) == []
    assert vault.reveal_lapsed(date(2029, 12, 31)) == []
    [reveal_index] = vault.reveal_lapsed(date(2030, 1, 1))
    reveal = entry(vault, reveal_index)
    event = reveal["event"]
    assert (
        seal_commitment(bytes.fromhex(reveal["salt"]), canonical_json(event))
        == (sealed["commitment"])
    )
    assert event["request"] == "req9" and "Okafor" not in json.dumps(reveal)
    [record] = vault.access_records("alice@example.test", date(2030, 1, 1))
    assert record.opens() and record.commitment == event["commitment"]
    assert vault.reveal_lapsed(date(2031, 1, 1)) == [], "revealed once only"


def test_a_format1_seal_is_revealed_without_naming_anyone(tmp_path: Path) -> None:
    """A seal written before format 2 committed to a record naming its principal: its
    reveal goes to the account holder's private record; the log gets a format-2 entry."""
    vault = make_vault(tmp_path)
    old = {
        "type": "access",
        "region": "eu-dublin",
        "account": account_hash("alice@example.test"),
        "justification": "THIRD_PARTY_DATA_REQUEST",
        "principal": "Dana Okafor (legal)",
        "time": "2025-03-01T10:00:00+00:00",
        "decision": "req1-item1",
    }
    salt, body = b"s" * 32, canonical_json(old)
    log = vault.access_log
    index = log.append(
        canonical_json(
            {
                "type": "sealed-access",
                "region": "eu-dublin",
                "commitment": hashlib.sha256(salt + body).hexdigest(),
            }
        )
    )
    with vault._db:
        vault._db.execute(
            "INSERT INTO sealed_events (log_index, salt, event, until) VALUES (?,?,?,?)",
            (index, salt, body, "2025-06-01"),
        )
    [reveal_index] = vault.reveal_lapsed(date(2026, 1, 1))
    reveal = entry(vault, reveal_index)
    assert reveal["legacy"] is True and "salt" not in reveal
    assert "Okafor" not in json.dumps(reveal) and old["account"] not in json.dumps(reveal)
    [record] = vault.access_records("alice@example.test", date(2026, 1, 1))
    assert record.opens() and record.commitment == reveal["event"]["commitment"]
    opening = record.fields["format1_seal"]
    reopened = hashlib.sha256(bytes.fromhex(opening["salt"]) + canonical_json(opening["event"]))
    assert reopened.hexdigest() == json.loads(log.entry(index))["commitment"]  # type: ignore[attr-defined]


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
    # Sealed and opened in place: the same HPKE, each way round.
    in_place = seal_in_place(public, "eu-dublin", bytearray(plaintext))
    assert open_sealed(private, "eu-dublin", bytes(in_place)) == plaintext
    for region, key in (("us-east", private), ("eu-dublin", X25519PrivateKey.generate())):
        with pytest.raises(SealedMessageError):
            open_in_place(key, region, bytearray(in_place))
    opened = bytearray(sealed)
    open_in_place(private, "eu-dublin", opened)
    assert opened == plaintext
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealedMessageError):
        open_in_place(private, "eu-dublin", tampered)


def test_a_message_in_pieces_is_encrypted_as_one(tmp_path: Path) -> None:
    """Small or large (streamed without a copy), the blob opens to the pieces joined."""
    vault = make_vault(tmp_path)
    key = vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "test")
    for body in (b"small body\r\n", b"x" * (3 << 20)):
        pieces = (b"Return-Path: <>\r\n", b"", b"Received: by us\r\n", body)
        assert key.decrypt(vault.encrypt("alice@example.test", *pieces)) == b"".join(pieces)


def test_a_message_encrypted_over_its_buffer_is_the_same_blob(tmp_path: Path) -> None:
    """SMTP's DATA buffer becomes the blob: it opens to the head and the message, as the
    blob `encrypt` makes of the two."""
    vault = make_vault(tmp_path)
    key = vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "test")
    head = b"Return-Path: <>\r\n"
    for body in (b"", b"small body\r\n", b"x" * (3 << 20) + b"end\r\n"):
        buffer = bytearray(body)
        blob = vault.encrypt_in_place("Alice@example.test", head, buffer)
        assert blob is buffer
        assert body[:64] not in blob or not body
        assert key.decrypt(bytes(blob)) == head + body
        assert len(blob) == len(vault.encrypt("alice@example.test", head, body))
