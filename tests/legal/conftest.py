"""Legal-workflow helpers: requests built from dicts, mail delivered the way SMTP does it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from borderline.cloud import Cloud
from borderline.law import LegalRequest, parse_request
from borderline.legal import LegalDesk

ALICE = "alice@example.test"  # homed in eu-dublin (Irish custodian)
BOB = "bob@example.test"  # homed in us-east (US custodian)
REVIEWERS = ("Ada Reviewer", "Ben Counsel")


def request(
    type: str = "ie_court_order",
    *,
    country: str = "IE",
    served_on: str = "ie-custodian",
    accounts: tuple[str, ...] = (ALICE,),
    categories: tuple[str, ...] = ("subscriber", "traffic", "content"),
    received: str = "2026-11-20",
    reference: str = "T-1",
    issued_by: str = "judge",
    scope_to: str = "2026-11-16",
    **extra: Any,
) -> LegalRequest:
    raw: dict[str, Any] = {
        "reference": reference,
        "received": received,
        "authority": {"name": "Test authority", "country": country, "kind": "court"},
        "instrument": extra.pop(
            "instrument", {"type": type, "issued_by": issued_by, "served_on": served_on}
        ),
        "scope": {
            "accounts": list(accounts),
            "categories": list(categories),
            "from": "2026-01-01",
            "to": scope_to,
        },
        **extra,
    }
    return parse_request(raw, Path("test-request.toml"))


def deliver(cloud: Cloud, address: str, subject: str, when: str) -> bytes:
    """Encrypt and commit a message as SMTP ingress does (planner, then store)."""
    region = cloud.home_region(address)
    assert region is not None
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = address
    message["Subject"] = subject
    message.set_content(f"body of {subject}\n")
    raw = message.as_bytes()
    received = datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()
    region.store.deliver([region.planner.local_delivery(address, raw, received)])
    return raw


@pytest.fixture
def desk(cloud: Cloud) -> Iterator[LegalDesk]:
    with LegalDesk(cloud) as desk:
        yield desk
