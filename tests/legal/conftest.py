"""Legal-workflow helpers: requests built from dicts, mail delivered the way SMTP does it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from borderline.cloud import Cloud
from borderline.law import LegalRequest, parse_request
from borderline.legal import LegalDesk
from borderline.staff import Signer, StaffRoster, parse_roles, totp_code

ALICE = "alice@example.test"  # homed in eu-dublin (Irish custodian)
BOB = "bob@example.test"  # homed in us-east (US custodian)
STAFF_PASSWORD = "staff password 1"


def enroll(roster: StaffRoster, name: str, roles: str, region: str) -> Signer:
    """Create a staff account and log in as the person would: password and a TOTP code."""
    enrolled = roster.add(name, parse_roles(roles), region, STAFF_PASSWORD)
    return roster.login(str(enrolled.member.id), STAFF_PASSWORD, totp_code(enrolled.totp_secret))


@dataclass(frozen=True)
class Staff:
    """Two reviewers at each custodian: the legal one also does intake."""

    ada: Signer  # Irish custodian: intake, legal reviewer
    ben: Signer  # Irish custodian: security reviewer
    cy: Signer  # US custodian: intake, legal reviewer
    dee: Signer  # US custodian: security reviewer

    def of(self, custodian: str) -> tuple[Signer, Signer]:
        return (self.ada, self.ben) if custodian == "ie-custodian" else (self.cy, self.dee)


@pytest.fixture
def roster(cloud: Cloud) -> Iterator[StaffRoster]:
    roster = StaffRoster.of(cloud.config)
    yield roster
    roster.close()


def enroll_staff(roster: StaffRoster) -> Staff:
    return Staff(
        enroll(roster, "Ada Reviewer", "intake,legal-reviewer", "eu-dublin"),
        enroll(roster, "Ben Counsel", "security-reviewer", "eu-dublin"),
        enroll(roster, "Cy Attorney", "intake,legal-reviewer", "us-east"),
        enroll(roster, "Dee Guard", "security-reviewer", "us-east"),
    )


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


@pytest.fixture
def staff(roster: StaffRoster) -> Staff:
    return enroll_staff(roster)
