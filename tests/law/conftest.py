"""Shared law-test helpers: a small cloud's facts and request builders."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from borderline.law import Custodian, LawEngine, LegalRequest, Region, StaticFacts, parse_request

US = Custodian("us-custodian", "Borderline US Inc.", "US")
IE = Custodian("ie-custodian", "Borderline Ireland Ltd", "IE")
CH = Custodian("ch-custodian", "Borderline Schweiz AG", "CH")
ACCOUNTS = {
    "alice@example.test": "eu-dublin",
    "bob@example.test": "us-east",
    "carol@example.test": "ch-zurich",
    "dan@example.test": "au-sydney",  # keyed by the US custodian
    "erin@example.test": "uk-london",  # keyed by the US custodian
}


def make_facts(dublin_keys: str = "ie-custodian", zurich_keys: str = "ch-custodian") -> StaticFacts:
    """The demo cloud; who holds the Dublin (or Zurich) keys is the variable under test."""
    regions = [
        Region("eu-dublin", "IE", dublin_keys),
        Region("us-east", "US", "us-custodian"),
        Region("ch-zurich", "CH", zurich_keys),
        Region("au-sydney", "AU", "us-custodian"),
        Region("uk-london", "GB", "us-custodian"),
    ]
    return StaticFacts([US, IE, CH], regions, ACCOUNTS)


def make_request(
    type: str,
    country: str,
    issued_by: str,
    served_on: str,
    received: str,
    categories: tuple[str, ...],
    accounts: tuple[str, ...] = ("alice@example.test",),
    emergency: bool = False,
    now: datetime | None = None,
    **instrument: Any,
) -> LegalRequest:
    """A request served on `received`; `scope` ({"from": ..., "to": ...}) and `danger` (given
    with every emergency unless passed) go where the file has them, the rest in [instrument]."""
    residence = instrument.pop("subject_residence", None)
    nondisclosure = instrument.pop("nondisclosure", None)
    period = instrument.pop("scope", {})
    danger = instrument.pop("danger", "a hostage is held and threatened with death")
    raw: dict[str, Any] = {
        "reference": f"T-{type}-{received}",
        "received": received,
        "authority": {"name": "Test authority", "country": country, "kind": issued_by},
        "instrument": {
            "type": type,
            "issued_by": issued_by,
            "served_on": served_on,
            **instrument,
        },
        "scope": {"accounts": list(accounts), "categories": list(categories), **period},
        "emergency": emergency,
    }
    if emergency:
        raw["danger"] = danger
    if residence:
        raw["scope"]["subject_residence"] = residence
    if nondisclosure:
        raw["nondisclosure"] = {"until": nondisclosure}
    return parse_request(raw, Path("<test>"), now)


@pytest.fixture(scope="session")
def engine() -> LawEngine:
    return LawEngine.load()
