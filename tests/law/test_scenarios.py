"""The scenario table: each case is a request, who holds the keys, and the expected decisions.

It starts from the 2013 Dublin warrant and replays it under the law of 2013, 2017 and today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from borderline.law import LawEngine

from .conftest import make_facts, make_request


@dataclass(frozen=True)
class Case:
    name: str
    request: dict[str, Any]
    outcomes: dict[str, str]  # "account/category" or "category" (first account) -> outcome
    policies: tuple[str, ...]  # each must appear in some decision's policy_ids
    citation: str  # must appear in some decision's citations
    dublin_keys: str = "ie-custodian"
    zurich_keys: str = "ch-custodian"
    obligations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> ids
    deadlines: dict[str, tuple[str, str]] = field(default_factory=dict)  # category -> (id, due)
    routes: dict[str, str] = field(default_factory=dict)  # category -> substring of route


WARRANT = {"type": "us_sca_warrant", "country": "US", "issued_by": "judge"}
UK_ORDER = {"type": "uk_production_order", "country": "GB", "issued_by": "judge"}
EPOC = {"type": "eu_epoc", "country": "FR", "served_on": "ie-custodian"}
ALL3 = ("subscriber", "traffic", "content")

CASES = [
    Case(
        "dublin-2013-us-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2013-12-04", "categories": ALL3},
        {"subscriber": "disclose", "traffic": "disclose", "content": "reject"},
        ("us.sca.content_abroad", "bind.domestic", "disclose.compelled"),
        "Morrison v. National Australia Bank",
        dublin_keys="us-custodian",
        obligations={"subscriber": ()},
    ),
    Case(
        "dublin-2013-irish-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2013-12-04", "categories": ALL3},
        {"subscriber": "refer", "traffic": "refer", "content": "refer"},
        ("control.keys", "route.us_ie_mlat"),
        "US-Ireland MLAT",
        routes={"content": "Central Authority for Mutual Assistance"},
    ),
    Case(
        "dublin-2017-after-second-circuit",
        {**WARRANT, "served_on": "us-custodian", "received": "2017-01-10", "categories": ALL3},
        {"subscriber": "disclose", "content": "reject"},
        ("us.sca.content_abroad",),
        "829 F.3d 197",
        dublin_keys="us-custodian",
    ),
    Case(
        "dublin-today-us-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-11-16T09:30:00Z"}
        | {"categories": ("subscriber", "content")},
        {"subscriber": "disclose", "content": "disclose"},
        ("disclose.compelled", "us.cloud.comity_motion", "eu.gdpr.art48_conflict"),
        "18 U.S.C. 2713",
        dublin_keys="us-custodian",
        obligations={"content": ("us.cloud.comity_motion", "eu.gdpr.art48_conflict")},
    ),
    Case(
        "dublin-today-irish-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-11-16", "categories": ALL3},
        {"subscriber": "refer", "traffic": "refer", "content": "refer"},
        ("control.keys", "route.us_ie_mlat"),
        "US-Ireland MLAT",
        routes={"content": "Central Authority for Mutual Assistance"},
    ),
    Case(
        "mlat-executed-irish-court-order",
        {"type": "ie_court_order", "country": "IE", "issued_by": "judge"}
        | {"served_on": "ie-custodian", "received": "2026-11-20", "categories": ALL3},
        {"subscriber": "disclose", "traffic": "disclose", "content": "disclose"},
        ("bind.domestic",),
        "Criminal Justice (Mutual Assistance) Act 2008",
    ),
    Case(
        "irish-order-served-on-the-wrong-custodian",
        {"type": "ie_court_order", "country": "IE", "issued_by": "judge"}
        | {"served_on": "us-custodian", "received": "2026-11-20", "categories": ("content",)},
        {"content": "refer"},
        ("bind.required", "route.serve_key_holder"),
        "Criminal Justice (Mutual Assistance) Act 2008",
        routes={"content": "Borderline Ireland Ltd"},
    ),
    Case(
        "uk-order-before-us-uk-agreement",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2021-06-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 10},
        {"bob@example.test/content": "refer"},
        ("bind.required", "route.us_uk_mlat"),
        "US-UK MLAT",
    ),
    Case(
        "uk-order-after-us-uk-agreement",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2022-10-03"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 10},
        {"bob@example.test/content": "disclose"},
        ("bind.us_uk_agreement",),
        "US-UK Data Access Agreement",
        deadlines={"content": ("produce", "2022-10-10T00:00:00+00:00")},
    ),
    Case(
        "uk-order-not-serious-crime",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("traffic",), "accounts": ("bob@example.test",), "max_penalty_years": 2},
        {"bob@example.test/traffic": "reject"},
        ("us_uk.serious_crime",),
        "US-UK Data Access Agreement",
    ),
    Case(
        "uk-order-targets-us-person",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"max_penalty_years": 10, "subject_residence": "US"},
        {"bob@example.test/content": "reject"},
        ("us_uk.us_person",),
        "US-UK Data Access Agreement",
    ),
    Case(
        "epoc-judge-content-notifies-enforcing-state",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("subscriber", "content"), "max_penalty_years": 5}
        | {"offence_country": "FR", "subject_residence": "IE"},
        {"subscriber": "disclose", "content": "disclose"},
        ("bind.eevidence", "eu.eevidence.art8_notification"),
        "Regulation (EU) 2023/1543",
        obligations={"subscriber": (), "content": ("eu.eevidence.art8_notification",)},
        deadlines={"content": ("produce", "2026-09-11T00:00:00+00:00")},
    ),
    Case(
        "epoc-offence-and-residence-in-issuing-state-no-notification",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("content",), "max_penalty_years": 5}
        | {"offence_country": "FR", "subject_residence": "FR"},
        {"content": "disclose"},
        ("bind.eevidence",),
        "Regulation (EU) 2023/1543",
        obligations={"content": ()},
    ),
    Case(
        "epoc-prosecutor-subscriber-yes-content-no",
        {**EPOC, "issued_by": "prosecutor", "received": "2026-09-01"}
        | {"categories": ("subscriber", "content"), "max_penalty_years": 5},
        {"subscriber": "disclose", "content": "reject"},
        ("eu.eevidence.art4_issuer",),
        "Regulation (EU) 2023/1543",
    ),
    Case(
        "epoc-offence-below-threshold",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("subscriber", "traffic"), "max_penalty_years": 2, "offence": "theft"},
        {"subscriber": "disclose", "traffic": "reject"},
        ("eu.eevidence.art5_offence",),
        "Regulation (EU) 2023/1543",
    ),
    Case(
        "epoc-listed-offence-below-threshold",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("traffic",), "max_penalty_years": 1, "offence": "Payment card fraud"},
        {"traffic": "disclose"},
        ("bind.eevidence",),
        "Regulation (EU) 2023/1543",
    ),
    Case(
        "epoc-before-regulation-applies",
        {**EPOC, "issued_by": "judge", "received": "2026-08-17"}
        | {"categories": ("content",), "max_penalty_years": 5},
        {"content": "refer"},
        ("eu.eevidence.not_yet_applicable", "route.eu_mla_2000"),
        "EU MLA Convention 2000",
    ),
    Case(
        "epoc-for-us-held-data-goes-through-eu-us-mla",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 5},
        {"bob@example.test/content": "refer"},
        ("control.keys", "route.us_eu_mla"),
        "EU-US MLA Agreement",
    ),
    Case(
        "epoc-in-a-domestic-case-needs-a-national-order",
        {**EPOC, "country": "IE", "issued_by": "judge", "received": "2026-10-01"}
        | {"categories": ("subscriber",)},
        {"subscriber": "refer"},
        ("eu.eevidence.domestic", "route.national_order"),
        "Regulation (EU) 2023/1543",
        routes={"subscriber": "national order of Ireland"},
    ),
    Case(
        "epoc-from-denmark",
        {**EPOC, "country": "DK", "issued_by": "judge", "received": "2026-10-01"}
        | {"categories": ("subscriber",)},
        {"subscriber": "refer"},
        ("eu.eevidence.issuer_not_participating", "route.eu_mla_2000"),
        "Regulation (EU) 2023/1543",
    ),
    Case(
        "epoc-emergency-8-hours",
        {**EPOC, "issued_by": "judge", "received": "2026-10-01T10:00:00Z", "emergency": True}
        | {"categories": ("content",), "max_penalty_years": 8},
        {"content": "disclose"},
        ("bind.eevidence",),
        "Regulation (EU) 2023/1543",
        deadlines={"content": ("produce_emergency", "2026-10-01T18:00:00+00:00")},
    ),
    Case(
        "us-subpoena-reaches-subscriber-not-content",
        {"type": "us_subpoena", "country": "US", "issued_by": "prosecutor"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("subscriber", "content"), "accounts": ("bob@example.test",)},
        {"bob@example.test/subscriber": "disclose", "bob@example.test/content": "reject"},
        ("reach.category",),
        "18 U.S.C. 2703",
    ),
    Case(
        "us-2703d-order-reaches-traffic-not-content",
        {"type": "us_2703d_order", "country": "US", "issued_by": "judge"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("traffic", "content"), "accounts": ("bob@example.test",)},
        {"bob@example.test/traffic": "disclose", "bob@example.test/content": "reject"},
        ("reach.category",),
        "Warshak",
    ),
    Case(
        "us-warrant-issued-by-police-is-void",
        {**WARRANT, "issued_by": "police", "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "reject"},
        ("bind.issuer_not_competent", "bind.required"),
        "18 U.S.C. 2703",
    ),
    Case(
        "us-preservation-90-days",
        {"type": "us_2703f_preservation", "country": "US", "issued_by": "agency"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "preserve"},
        ("preserve.compelled",),
        "18 U.S.C. 2703",
        deadlines={"content": ("preserve_until", "2026-05-30T00:00:00+00:00")},
    ),
    Case(
        "eu-preservation-order-60-days",
        {"type": "eu_epoc_pr", "country": "FR", "issued_by": "prosecutor"}
        | {"served_on": "ie-custodian", "received": "2026-09-01", "categories": ("content",)},
        {"content": "preserve"},
        ("bind.eevidence", "preserve.compelled"),
        "Regulation (EU) 2023/1543",
        deadlines={"content": ("preserve_until", "2026-10-31T00:00:00+00:00")},
    ),
    Case(
        "us-emergency-request",
        {"type": "us_emergency_request", "country": "US", "issued_by": "police"}
        | {"served_on": "us-custodian", "received": "2026-03-01T02:00:00Z", "emergency": True}
        | {"categories": ("subscriber", "content"), "accounts": ("bob@example.test",)},
        {"bob@example.test/subscriber": "disclose", "bob@example.test/content": "disclose"},
        ("bind.us_emergency",),
        "18 U.S.C. 2702(b)(8)",
    ),
    Case(
        "us-emergency-request-without-emergency",
        {"type": "us_emergency_request", "country": "US", "issued_by": "police"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "reject"},
        ("bind.emergency_not_declared",),
        "18 U.S.C. 2702(b)(8)",
    ),
    Case(
        "unknown-account-no-data",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("nobody@example.test", "bob@example.test")},
        {"nobody@example.test/content": "no_data", "bob@example.test/content": "disclose"},
        ("account.not_found",),
        "18 U.S.C. 2703",
    ),
    Case(
        "mla-request-served-on-provider",
        {"type": "mlat_request", "country": "US", "issued_by": "central_authority"}
        | {"served_on": "ie-custodian", "received": "2026-03-01", "categories": ("content",)},
        {"content": "refer"},
        ("mla.addressed_to_state", "route.us_ie_mlat"),
        "US-Ireland MLAT",
    ),
    Case(
        "swiss-order-on-swiss-custodian",
        {"type": "ch_order", "country": "CH", "issued_by": "prosecutor"}
        | {"served_on": "ch-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("carol@example.test",)},
        {"carol@example.test/content": "disclose"},
        ("bind.domestic",),
        "Swiss Criminal Procedure Code",
    ),
    Case(
        "us-warrant-on-swiss-custodian",
        {**WARRANT, "served_on": "ch-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("carol@example.test",)},
        {"carol@example.test/content": "refer"},
        ("ch.art271.foreign_order", "route.us_ch_mlat"),
        "Swiss Criminal Code (SR 311.0), Art. 271",
        routes={"content": "Swiss Federal Office of Justice"},
    ),
    Case(
        "us-warrant-us-custodian-holds-swiss-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("carol@example.test",)},
        {"carol@example.test/content": "disclose"},
        ("ch.art271.conflict", "us.cloud.comity_motion"),
        "Art. 271",
        zurich_keys="us-custodian",
        obligations={"content": ("us.cloud.comity_motion", "ch.art271.conflict")},
    ),
]


def _key(account: str, category: str, first: str) -> list[str]:
    return [f"{account}/{category}"] + ([category] if account == first else [])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scenario(engine: LawEngine, case: Case) -> None:
    request = make_request(**case.request)
    decisions = engine.decide(request, make_facts(case.dublin_keys, case.zurich_keys))
    first = request.scope.accounts[0]
    by_key = {}
    for d in decisions:
        for key in _key(d.item.account, d.item.category, first):
            by_key[key] = d
    assert {k: by_key[k].outcome for k in case.outcomes} == case.outcomes
    all_ids = {pid for d in decisions for pid in d.policy_ids}
    assert set(case.policies) <= all_ids
    assert any(case.citation in c for d in decisions for c in d.citations)
    for category, expected in case.obligations.items():
        assert sorted(o.policy_id for o in by_key[category].obligations) == sorted(expected)
    for category, (deadline_id, due) in case.deadlines.items():
        deadlines = {dl.id: dl.due.isoformat() for dl in by_key[category].deadlines}
        assert deadlines.get(deadline_id) == due
    for category, route in case.routes.items():
        assert route in (by_key[category].route or "")
    for d in decisions:
        assert d.policy_ids, "every outcome names the policies that produced it"
        assert d.law_date == request.law_date
        if d.outcome in ("reject", "refer"):
            assert d.ground
        if d.outcome == "refer":
            assert d.route


def test_preservation_extension_and_law_date(engine: LawEngine) -> None:
    request = make_request(
        "us_2703f_preservation", "US", "agency", "us-custodian", "2026-03-01", ("traffic",),
        accounts=("bob@example.test",), served="2026-03-03T12:00:00Z",
    )  # fmt: skip
    (decision,) = engine.decide(request, make_facts())
    assert decision.law_date.isoformat() == "2026-03-03"
    (deadline,) = decision.deadlines
    assert deadline.extension_days == 90
    assert deadline.due == datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_citations_are_those_of_the_day(engine: LawEngine) -> None:
    """A 2013 decision must not cite a 2016 case; a 2017 one does."""
    facts = make_facts("us-custodian")
    for day, cited in (("2013-12-04", False), ("2017-01-10", True)):
        request = make_request("us_sca_warrant", "US", "judge", "us-custodian", day, ("content",))
        (decision,) = engine.decide(request, facts)
        assert decision.outcome == "reject"
        assert any("829 F.3d 197" in c for c in decision.citations) is cited


def test_nondisclosure_obligation_lasts_until_the_order_lapses(engine: LawEngine) -> None:
    request = make_request(
        "us_sca_warrant", "US", "judge", "us-custodian", "2026-03-01", ("content",),
        accounts=("bob@example.test",), nondisclosure="2027-03-01",
    )  # fmt: skip
    (decision,) = engine.decide(request, make_facts())
    (obligation,) = decision.obligations
    assert obligation.policy_id == "us.sca.nondisclosure"
    assert obligation.due == datetime(2027, 3, 1, tzinfo=UTC)
    assert any("2705(b)" in c for c in obligation.citations)
