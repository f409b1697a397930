"""The scenario table: each case is a request, who holds the keys, and the expected decisions.

It starts from the 2013 Dublin warrant and replays it under the law of 2013, 2017 and today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from borderline.law import Custodian, LawEngine, Region, StaticFacts

from .conftest import make_facts, make_request

ACCOUNTS_UK = {"erin@example.test": "uk-london"}


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
    absent: tuple[str, ...] = ()  # policy ids no decision may carry


WARRANT = {"type": "us_sca_warrant", "country": "US", "issued_by": "judge"}
UK_ORDER = {"type": "uk_production_order", "country": "GB", "issued_by": "judge"}
EPOC = {"type": "eu_epoc", "country": "FR", "served_on": "ie-custodian"}
AU_ORDER = {"type": "au_international_production_order", "country": "AU", "issued_by": "judge"}
CH_ORDER = {"type": "ch_order", "country": "CH", "issued_by": "prosecutor"}
ALL3 = ("subscriber", "traffic", "content")
NO_ROUTE = "No treaty, agreement or other mechanism"

CASES = [
    Case(
        "dublin-2013-us-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2013-12-04", "categories": ALL3},
        {"subscriber": "disclose", "traffic": "disclose", "content": "refer"},
        ("us.sca.content_abroad", "bind.domestic", "disclose.compelled", "route.us_ie_mlat"),
        "Morrison v. National Australia Bank",
        dublin_keys="us-custodian",
        obligations={"subscriber": ()},
        routes={"content": "US-Ireland Mutual Legal Assistance Treaty"},
        absent=("us.cloud.data_abroad",),  # no CLOUD Act in 2013: 2713 is not cited
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
        {"subscriber": "disclose", "content": "refer"},
        ("us.sca.content_abroad", "route.us_ie_mlat"),
        "829 F.3d 197",
        dublin_keys="us-custodian",
    ),
    Case(
        "dublin-today-us-custodian-holds-ie-keys",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-11-16T09:30:00Z"}
        | {"categories": ("subscriber", "content")},
        {"subscriber": "disclose", "content": "disclose"},
        ("disclose.compelled", "us.cloud.data_abroad", "eu.gdpr.art48_conflict"),
        "18 U.S.C. 2713",
        dublin_keys="us-custodian",
        # Ireland has no CLOUD Act agreement: common-law comity only, no 14-day motion.
        obligations={"content": ("us.cloud.comity_common_law", "eu.gdpr.art48_conflict")},
        absent=("us.cloud.comity_motion",),
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
        routes={"content": "Serve the order on Borderline Ireland Ltd"},
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
        ("bind.cloud_act_agreement",),
        "US-UK Data Access Agreement",
        deadlines={"content": ("produce", "2022-10-10T00:00:00+00:00")},
    ),
    Case(
        "uk-order-not-serious-crime",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("traffic",), "accounts": ("bob@example.test",), "max_penalty_years": 2},
        {"bob@example.test/traffic": "reject"},
        ("agreement.serious_crime", "route.us_uk_mlat"),
        "US-UK Data Access Agreement",
        routes={"traffic": "US-UK Mutual Legal Assistance Treaty"},  # rejected, route still named
    ),
    Case(
        "uk-order-three-years-is-not-more-than-three",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("traffic",), "accounts": ("bob@example.test",), "max_penalty_years": 3},
        {"bob@example.test/traffic": "reject"},
        ("agreement.serious_crime",),
        "US-UK Data Access Agreement",
    ),
    Case(
        "uk-order-targets-us-person",
        {**UK_ORDER, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"max_penalty_years": 10, "subject_residence": "US"},
        {"bob@example.test/content": "reject"},
        ("agreement.us_person",),
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
        absent=("eu.eevidence.art8_emergency",),
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
        ("eu.eevidence.art4_issuer", "route.eu_mla_2000"),
        "Regulation (EU) 2023/1543",
        routes={"content": "EU Convention on Mutual Assistance in Criminal Matters of 2000"},
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
        | {"categories": ("traffic",), "max_penalty_years": 1, "offence": "Payment card fraud"}
        | {"listed_offence": "non_cash_payment_fraud", "by_information_system": True},
        {"traffic": "disclose"},
        ("bind.eevidence", "eu.eevidence.art5_listed"),
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
        ("eu.eevidence.domestic", "route.domestic_instrument"),
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
        ("bind.eevidence", "eu.eevidence.art8_emergency"),
        "Regulation (EU) 2023/1543",
        # Answered within 8 hours; the enforcing state's 96 hours do not hold the transfer back.
        obligations={"content": ("eu.eevidence.art8_emergency",)},
        deadlines={"content": ("produce_emergency", "2026-10-01T18:00:00+00:00")},
        absent=("eu.eevidence.art8_notification",),
    ),
    Case(
        "us-subpoena-reaches-subscriber-not-content",
        {"type": "us_subpoena", "country": "US", "issued_by": "prosecutor"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("subscriber", "content"), "accounts": ("bob@example.test",)},
        {"bob@example.test/subscriber": "disclose", "bob@example.test/content": "reject"},
        ("reach.category", "route.domestic_instrument"),
        "18 U.S.C. 2703",
        routes={"content": "SCA search warrant, issued by a judge or a court"},
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
        ("bind.issuer_not_competent", "bind.required", "route.domestic_instrument"),
        "18 U.S.C. 2703",
        routes={"content": "SCA search warrant, issued by a judge or a court"},
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
        ("bind.us_emergency", "disclose.voluntary"),
        "18 U.S.C. 2702(b)(8)",
        # Voluntary: no compelled-disclosure basis; recorded as an emergency.
        obligations={"content": ("us.emergency.record",)},
        absent=("disclose.compelled", "us.cloud.comity_common_law"),
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
        ("ch.art271.conflict", "us.cloud.comity_common_law", "us.cloud.data_abroad"),
        "Art. 271",
        zurich_keys="us-custodian",
        obligations={"content": ("us.cloud.comity_common_law", "ch.art271.conflict")},
    ),
    # Item 1: every refusal names the lawful route between the two states, or says none exists.
    Case(
        "swiss-order-served-directly-on-the-us-entity",
        {**CH_ORDER, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "refer"},
        ("bind.required", "route.us_ch_mlat", "route.budapest"),
        "US-Swiss MLAT",
        routes={"content": "Office of International Affairs, US Department of Justice"},
    ),
    Case(
        "swiss-order-for-irish-data-goes-through-the-1959-convention",
        {**CH_ORDER, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",)},
        {"content": "refer"},
        ("route.coe_mla_1959",),
        "ETS No. 30",
        routes={"content": "European Convention on Mutual Assistance in Criminal Matters"},
        absent=("route.budapest",),  # Ireland has not ratified the Budapest Convention
    ),
    Case(
        "swiss-order-for-zurich-data-keyed-by-the-us-entity-asks-the-us",
        {**CH_ORDER, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("carol@example.test",)},
        {"carol@example.test/content": "refer"},
        ("route.us_ch_mlat",),
        "US-Swiss MLAT",
        zurich_keys="us-custodian",
        routes={"content": "US Department of Justice"},
        absent=("route.ch_imac",),
    ),
    Case(
        "australian-order-on-the-irish-custodian-has-no-route",
        {**AU_ORDER, "served_on": "ie-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "max_penalty_years": 10},
        {"content": "reject"},
        ("bind.required", "route.none"),
        "Telecommunications (Interception and Access) Act 1979",
        routes={"content": NO_ROUTE + " for obtaining this evidence from Ireland"},
    ),
    # Item 2: the statutory comity motion only for a qualifying foreign government.
    Case(
        "us-warrant-for-australian-data-after-the-agreement-statutory-motion",
        {**WARRANT, "served_on": "us-custodian", "received": "2024-06-01"}
        | {"categories": ("content",), "accounts": ("dan@example.test",)},
        {"dan@example.test/content": "disclose"},
        ("us.cloud.data_abroad", "us.cloud.comity_motion"),
        "18 U.S.C. 2703(h)(2)",
        obligations={"content": ("us.cloud.comity_motion",)},
    ),
    Case(
        "us-warrant-for-australian-data-before-the-agreement-common-law-comity",
        {**WARRANT, "served_on": "us-custodian", "received": "2024-01-30"}
        | {"categories": ("content",), "accounts": ("dan@example.test",)},
        {"dan@example.test/content": "disclose"},
        ("us.cloud.data_abroad", "us.cloud.comity_common_law"),
        "sec. 103(c)",
        obligations={"content": ("us.cloud.comity_common_law",)},
    ),
    Case(
        "us-warrant-for-uk-data-after-the-agreement-statutory-motion",
        {**WARRANT, "served_on": "us-custodian", "received": "2022-10-03"}
        | {"categories": ("content",), "accounts": ("erin@example.test",)},
        {"erin@example.test/content": "disclose"},
        ("us.cloud.comity_motion",),
        "18 U.S.C. 2713",
        obligations={"content": ("us.cloud.comity_motion",)},
    ),
    Case(
        "us-warrant-for-uk-data-of-a-us-resident-no-statutory-motion",
        {**WARRANT, "served_on": "us-custodian", "received": "2024-06-01"}
        | {"categories": ("content",), "accounts": ("erin@example.test",)}
        | {"subject_residence": "US"},
        {"erin@example.test/content": "disclose"},
        ("us.cloud.data_abroad",),
        "18 U.S.C. 2713",
        obligations={"content": ()},
    ),
    Case(
        "us-warrant-for-us-data-cites-no-2713",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "disclose"},
        ("disclose.compelled",),
        "18 U.S.C. 2703",
        absent=("us.cloud.data_abroad", "us.cloud.comity_common_law", "us.cloud.comity_motion"),
    ),
    # Item 3: stored-data orders reach data that exists when served.
    Case(
        "warrant-served-in-2024-for-data-of-2027-is-refused",
        {**WARRANT, "served_on": "us-custodian", "received": "2024-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"scope": {"from": "2027-01-01", "to": "2028-12-31"}},
        {"bob@example.test/content": "reject"},
        ("scope.after_service", "route.after_period"),
        "18 U.S.C. 2703",
        routes={"content": "Serve a new order once the period has passed"},
    ),
    Case(
        "preservation-of-a-future-period-is-refused",
        {"type": "us_2703f_preservation", "country": "US", "issued_by": "agency"}
        | {"served_on": "us-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"scope": {"from": "2026-03-02"}},
        {"bob@example.test/content": "reject"},
        ("scope.after_service",),
        "18 U.S.C. 2703",
    ),
    Case(
        "period-running-past-service-is-cut-at-service",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-03-01T10:00:00Z"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"scope": {"from": "2026-01-01", "to": "2026-12-31"}},
        {"bob@example.test/content": "disclose"},
        ("scope.cut_at_service",),
        "18 U.S.C. 2703",
        obligations={"content": ("scope.cut_at_service",)},
    ),
    Case(
        "period-ending-on-the-service-day-is-not-cut",
        {**WARRANT, "served_on": "us-custodian", "received": "2026-03-01T10:00:00Z"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)}
        | {"scope": {"from": "2026-01-01", "to": "2026-03-01"}},
        {"bob@example.test/content": "disclose"},
        ("disclose.compelled",),
        "18 U.S.C. 2703",
        obligations={"content": ()},
    ),
    # Item 5: listed offences are legal categories, never substrings.
    Case(
        "epoc-tax-fraud-is-not-a-listed-offence",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("content",), "max_penalty_years": 1, "offence": "tax fraud"},
        {"content": "reject"},
        ("eu.eevidence.art5_offence",),
        "Regulation (EU) 2023/1543",
        absent=("eu.eevidence.art5_listed",),
    ),
    Case(
        "epoc-payment-fraud-not-by-information-system-is-not-listed",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("content",), "max_penalty_years": 1}
        | {"listed_offence": "non_cash_payment_fraud"},
        {"content": "reject"},
        ("eu.eevidence.art5_offence",),
        "Regulation (EU) 2023/1543",
    ),
    Case(
        "epoc-terrorism-is-listed-without-an-information-system",
        {**EPOC, "issued_by": "judge", "received": "2026-09-01"}
        | {"categories": ("content",), "max_penalty_years": 1, "listed_offence": "terrorism"},
        {"content": "disclose"},
        ("eu.eevidence.art5_listed",),
        "Regulation (EU) 2023/1543",
    ),
    # Item 6: Australia, under its CLOUD Act agreement in force from 2024-01-31.
    Case(
        "australian-order-after-the-agreement",
        {**AU_ORDER, "served_on": "us-custodian", "received": "2024-01-31"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 3},
        {"bob@example.test/content": "disclose"},  # "at least three years": 3 is enough
        ("bind.cloud_act_agreement",),
        "Australia-US CLOUD Act Agreement",
    ),
    Case(
        "australian-order-before-the-agreement-goes-through-the-mlat",
        {**AU_ORDER, "served_on": "us-custodian", "received": "2024-01-30"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 10},
        {"bob@example.test/content": "refer"},
        ("bind.required", "route.us_au_mlat", "route.budapest"),
        "US-Australia MLAT",
        routes={"content": "US-Australia Treaty on Mutual Assistance"},
    ),
    Case(
        "australian-order-below-serious-crime",
        {**AU_ORDER, "served_on": "us-custodian", "received": "2024-06-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",), "max_penalty_years": 2},
        {"bob@example.test/content": "reject"},
        ("agreement.serious_crime", "route.us_au_mlat"),
        "Australia-US CLOUD Act Agreement",
    ),
    Case(
        "us-warrant-served-on-the-irish-custodian-for-us-data",
        {**WARRANT, "served_on": "ie-custodian", "received": "2026-03-01"}
        | {"categories": ("content",), "accounts": ("bob@example.test",)},
        {"bob@example.test/content": "refer"},
        ("route.serve_key_holder",),
        "18 U.S.C. 2703",
        routes={"content": "Serve the order on Borderline US Inc."},
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
        assert any(route in r for r in by_key[category].routes), by_key[category].routes
    assert not set(case.absent) & all_ids
    for d in decisions:
        assert d.policy_ids, "every outcome names the policies that produced it"
        assert d.law_date == request.law_date
        if d.outcome in ("reject", "refer"):
            assert d.ground and d.route and d.route == d.routes[0]


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
    """A 2013 decision cites the law of 2013 and shows the 2016 case only as later history."""
    facts = make_facts("us-custodian")
    for day, cited in (("2013-12-04", False), ("2017-01-10", True)):
        request = make_request("us_sca_warrant", "US", "judge", "us-custodian", day, ("content",))
        (decision,) = engine.decide(request, facts)
        assert decision.outcome == "refer"
        assert any("829 F.3d 197" in c for c in decision.citations) is cited
        later = " ".join(decision.later_history)
        assert ("829 F.3d 197" in later and "later upheld" in later) is not cited
        assert "later replaced the rule" in later  # the CLOUD Act came after both
    (ground,) = [r for r in decision.reasons if r.policy_id == "us.sca.content_abroad"]
    assert "presumption against extraterritoriality" in ground.text


def test_2013_replay_cites_the_rule_as_of_2013(engine: LawEngine) -> None:
    request = make_request(
        "us_sca_warrant", "US", "judge", "us-custodian", "2013-12-04", ("content",)
    )
    (decision,) = engine.decide(request, make_facts("ie-custodian"))
    assert decision.ground and "presumption against extraterritoriality" in decision.ground
    for source in ("18 U.S.C. 2703(a)", "Morrison", "499 U.S. 244", "Kiobel"):
        assert any(source in c for c in decision.citations), source
    assert not any("2713" in c or "829 F.3d" in c for c in decision.citations)
    assert decision.later_history[0].startswith("2016-07-14: In re Warrant")


def test_emergencies(engine: LawEngine) -> None:
    """An emergency EPOC transfers within 8 hours, not held by the Art. 8 notification; a US
    emergency disclosure is voluntary."""
    epoc = {"offence_country": "FR", "max_penalty_years": 8}
    normal, urgent = (
        engine.decide(
            make_request(
                "eu_epoc", "FR", "judge", "ie-custodian", "2026-10-01T10:00:00Z",
                ("content",), emergency=emergency, **epoc,
            ),
            make_facts(),
        )[0]
        for emergency in (False, True)
    )  # fmt: skip
    assert [(o.policy_id, o.holds_transfer) for o in normal.obligations] == [
        ("eu.eevidence.art8_notification", True)
    ]
    assert [(o.policy_id, o.holds_transfer) for o in urgent.obligations] == [
        ("eu.eevidence.art8_emergency", False)
    ]
    assert urgent.obligations[0].due == datetime(2026, 10, 5, 10, tzinfo=UTC)  # 96 hours
    us = make_request(
        "us_emergency_request", "US", "police", "us-custodian", "2026-03-01", ("content",),
        accounts=("bob@example.test",), emergency=True, danger="a threat to kill a named child",
    )  # fmt: skip
    (decision,) = engine.decide(us, make_facts())
    assert decision.outcome == "disclose" and decision.voluntary
    assert not normal.voluntary
    (record,) = decision.obligations
    assert "a threat to kill a named child" in record.text


def test_scope_is_cut_at_service(engine: LawEngine) -> None:
    request = make_request(
        "us_sca_warrant", "US", "judge", "us-custodian", "2026-03-01T10:00:00Z", ("content",),
        accounts=("bob@example.test",), scope={"from": "2026-01-01", "to": "2026-12-31"},
    )  # fmt: skip
    (decision,) = engine.decide(request, make_facts())
    assert decision.data_until == datetime(2026, 3, 1, 10, tzinfo=UTC)
    (cut,) = decision.obligations
    assert "runs to 2026-12-31, after the order was served on 2026-03-01T10:00:00" in cut.text


def test_listed_offence_names_its_source(engine: LawEngine) -> None:
    request = make_request(
        "eu_epoc", "FR", "judge", "ie-custodian", "2026-09-01", ("content",),
        max_penalty_years=1, listed_offence="child_sexual_abuse", by_information_system=True,
    )  # fmt: skip
    (decision,) = engine.decide(request, make_facts())
    (listed,) = [r for r in decision.reasons if r.policy_id == "eu.eevidence.art5_listed"]
    assert "Directive 2011/93/EU, Arts. 3-7" in listed.text and "Art. 5(4)(b)(ii)" in listed.text
    refused = make_request(
        "eu_epoc", "FR", "judge", "ie-custodian", "2026-09-01", ("content",),
        max_penalty_years=1, listed_offence="child_sexual_abuse",
    )  # fmt: skip
    (decision,) = engine.decide(refused, make_facts())
    assert decision.ground and "does not say it was" in decision.ground


def test_no_route_at_home_says_so(engine: LawEngine) -> None:
    """A UK order for UK data held by a UK custodian needs no treaty; this law data knows no
    national UK order, and the refusal says that rather than inventing a route."""
    uk = Custodian("uk-custodian", "Borderline UK Ltd", "GB")
    facts = StaticFacts([uk], [Region("uk-london", "GB", "uk-custodian")], ACCOUNTS_UK)
    request = make_request(
        "uk_production_order", "GB", "judge", "uk-custodian", "2026-03-01", ("content",),
        accounts=("erin@example.test",), max_penalty_years=10,
    )  # fmt: skip
    (decision,) = engine.decide(request, facts)
    assert decision.outcome == "reject"
    assert decision.policy_ids[-1] == "route.none_domestic"
    assert decision.route and "no mutual assistance is needed" in decision.route


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
