"""Logs written before entries stopped naming anyone: their format-1 entries stay readable,
the account holder finds their own, and no format-1 entry may follow format 2."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest

from borderline.cli.log_cmd import account_history
from borderline.cloud import Cloud
from borderline.report import LogSnapshot
from borderline.tlog import VerificationError
from borderline.vault import Justification
from borderline.vault.access import account_hash, canonical_json

ALICE = "alice@example.test"


def format1_access(principal: str) -> bytes:
    return canonical_json(
        {
            "type": "access",
            "region": "eu-dublin",
            "account": account_hash(ALICE),
            "justification": "CUSTOMER_INITIATED_ACCESS",
            "principal": principal,
            "time": "2025-05-01T10:00:00+00:00",
        }
    )


def test_format1_entries_stay_and_the_holder_finds_them(cloud: Cloud) -> None:
    region = cloud.region("eu-dublin")
    log = region.transparency_log
    log.append(format1_access("imap:alice@example.test@198.51.100.7"))
    salt, event = b"s" * 32, format1_access("legal:someone")
    seal = {
        "type": "sealed-access",
        "region": "eu-dublin",
        "commitment": hashlib.sha256(salt + event).hexdigest(),
    }
    log.append(canonical_json(seal))
    reveal = {"type": "reveal", "index": 1, "salt": salt.hex(), "event": json.loads(event)}
    log.append(canonical_json(reveal))
    region.vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "imap:now")
    log.checkpoint()
    view = LogSnapshot.load(log.directory, log.verifier_key())
    assert view.format1_entries == 3
    history = account_history(view, ALICE, region.vault.access_records(ALICE, date.today()))
    rows = [(e["index"], e["format"], e["revealed_from"]) for e in history["events"]]
    assert rows == [(0, 1, None), (2, 1, 1), (3, 2, None)]
    assert history["events"][0]["private"]["principal"].endswith("198.51.100.7")
    assert history["events"][2]["private"]["principal"] == "imap:now"

    # A format-1 entry after format 2 began is a downgrade: every reader refuses the log.
    log.append(format1_access("imap:late"))
    log.checkpoint()
    with pytest.raises(VerificationError, match="format 1, after format 2"):
        LogSnapshot.load(log.directory, log.verifier_key()).events()
