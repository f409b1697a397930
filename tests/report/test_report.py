"""Transparency reports: grouping, the "<5" rule, formats, logs and legal records as sources."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.legal import LegalDesk
from borderline.report import LogSnapshot
from borderline.report.render import _bar, _figure, to_csv, to_html, to_json
from borderline.report.sources import legal_requests
from borderline.report.transparency import (
    Names,
    OutcomeClass,
    RegionLog,
    RequestSummary,
    build_report,
    shown,
)
from borderline.staff import StaffRoster
from borderline.vault import Justification
from tests.legal.conftest import ALICE, BOB, deliver, enroll_staff, request
from tests.legal.test_cli import add_staff
from tests.legal.test_cli import ok as submit_as
from tests.report.conftest import fails, ok

pytestmark = pytest.mark.one_engine(
    "reports come from the legal records and the logs; disclosures read from the store run on"
    " both engines in tests/legal/test_package.py"
)

START, END = date(2026, 1, 1), date(2026, 6, 30)
ROOT = bytes(range(32))
GOLDEN = Path(__file__).parent / "golden"
NAMES = Names(
    countries={"DE": "Germany", "US": "United States", "FR": "France"},
    instruments={"eu_epoc": "European Production Order (EPOC)", "us_sca_warrant": "SCA warrant"},
    custodians={"ie-custodian": "Borderline Ireland Ltd", "us-custodian": "Borderline US Inc."},
    region_locations={"eu-dublin": "IE", "us-east": "US"},
)
DUBLIN = ("eu-dublin", "ie-custodian")


def summary(n: int, accounts: int = 1, **fields: object) -> RequestSummary:
    outcome = fields.get("outcome", OutcomeClass.NON_CONTENT)
    base: dict[str, object] = {
        "reference": f"R-{n}",
        "received": date(2026, 3, 1),
        "country": "DE",
        "instrument": "eu_epoc",
        "addressee": "ie-custodian",
        "outcome": OutcomeClass.NON_CONTENT,
        "categories": ("subscriber",),
        "public_id": f"req{n}",
        "accounts": accounts,
        "locations": tuple((*DUBLIN, outcome) for _ in range(accounts)),
    }
    base.update(fields)
    return RequestSummary(**base)  # type: ignore[arg-type]


def sample() -> list[RequestSummary]:
    german = [summary(i, accounts=2) for i in range(7)]
    us = [
        summary(
            10,
            country="US",
            instrument="us_sca_warrant",
            addressee="us-custodian",
            outcome=OutcomeClass.REFERRED,
            refusal_grounds=("us.sca.mlat_route",),
        ),
        summary(
            11,
            country="US",
            instrument="us_sca_warrant",
            addressee="us-custodian",
            outcome=OutcomeClass.CONTENT,
            accounts=2,
            locations=(
                ("eu-dublin", "ie-custodian", OutcomeClass.REFERRED),
                ("us-east", "us-custodian", OutcomeClass.CONTENT),
            ),
            nondisclosure=True,
        ),
        summary(12, country="US", outcome=OutcomeClass.NO_DATA, locations=()),
    ]
    refused = [
        summary(
            20 + i,
            outcome=OutcomeClass.REJECTED,
            categories=("traffic", "content"),
            emergency=True,
            refusal_grounds=("ee.epoc.judge_required",),
        )
        for i in range(5)
    ]
    earlier = [summary(30 + i, received=date(2025, 9, 1), country="FR") for i in range(6)]
    return german + us + refused + earlier


def region_log(**fields: object) -> RegionLog:
    base: dict[str, object] = {
        "region": "eu-dublin",
        "origin": "example.test/eu-dublin",
        "size": 1234,
        "root": ROOT,
        "accesses": {"CUSTOMER_INITIATED_ACCESS": 900, "THIRD_PARTY_DATA_REQUEST": 2},
        "sealed": 3,
        "still_sealed": 0,
        "requests": frozenset({"req1", "req11"}),
    }
    base.update(fields)
    return RegionLog(**base)  # type: ignore[arg-type]


def golden_report() -> str:
    generated = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    return to_json(
        build_report(sample(), [region_log()], START, END, "Test cloud", generated, NAMES)
    )


def table(data: dict[str, object], key: str) -> dict[tuple[str, ...], list[object]]:
    """A JSON table as {labels: [value per measure]}."""
    tables = data["tables"]
    assert isinstance(tables, list)
    for t in tables:
        if t["key"] == key:
            n = len(t["columns"])
            return {tuple(row[:n]): row[n:] for row in t["rows"]}
    raise AssertionError(f"no table {key!r}")


def test_small_counts_rule() -> None:
    assert [shown(n) for n in (0, 1, 4, 5, 6, 1000)] == [0, "<5", "<5", 5, 6, 1000]


def test_requests_and_accounts_by_outcome_country_instrument_and_place() -> None:
    data = json.loads(golden_report())
    assert table(data, "summary") == {
        ("requests received",): [15],
        ("accounts specified",): [23],
        ("requests in which some data was disclosed",): [8],
        ("requests referred to the lawful route",): ["<5"],
        ("emergency requests",): [5],
        ("requests under a nondisclosure order",): ["<5"],
    }
    assert table(data, "by_outcome") == {
        ("content disclosed",): ["<5", "<5"],
        ("non-content disclosed",): [7, 14],
        ("no data found",): ["<5", "<5"],
        ("referred to the lawful route",): ["<5", "<5"],
        ("rejected",): [5, 5],
        ("preserved only",): [0, 0],
        ("pending",): [0, 0],
    }
    # Countries and instruments by their plain names, with every outcome class.
    by_country = table(data, "by_country")
    assert by_country[("Germany (DE)",)] == [12, 19, 0, 7, 0, 0, 5, 0, 0]
    assert by_country[("United States (US)",)] == ["<5", "<5", "<5", 0, "<5", "<5", 0, 0, 0]
    assert set(table(data, "by_instrument")) == {
        ("European Production Order (EPOC)",),
        ("SCA warrant",),
    }
    assert table(data, "by_region_and_custodian") == {
        ("eu-dublin", "IE", "Borderline Ireland Ltd"): [14, 21, 0, 7, "<5", 5],
        ("us-east", "United States (US)", "Borderline US Inc."): ["<5", "<5", "<5", 0, 0, 0],
    }
    special = table(data, "emergency_and_nondisclosure")
    assert special[("emergency requests",)][:2] == [5, 5]
    assert special[("requests under a nondisclosure order",)][:3] == ["<5", "<5", "<5"]


def test_trend_by_half_year_and_the_logs() -> None:
    data = json.loads(golden_report())
    trend = table(data, "trend")
    halves = [(2023, 2), (2024, 1), (2024, 2), (2025, 1), (2025, 2), (2026, 1)]
    assert list(trend) == [(f"H{half} {year}",) for year, half in halves]
    assert trend[("H2 2025",)] == [6, 6, 6, 0, 0]
    assert trend[("H1 2026",)] == [15, 23, 8, "<5", 5]
    assert table(data, "key_releases") == {
        ("eu-dublin", "CUSTOMER_INITIATED_ACCESS"): [900],
        ("eu-dublin", "THIRD_PARTY_DATA_REQUEST"): ["<5"],
    }
    assert table(data, "unknown_requests") == {("eu-dublin",): [0]}
    assert table(data, "eevidence_refusals") == {("ee.epoc.judge_required",): [5]}
    assert [d["term"] for d in data["definitions"]][:2] == ["Request", "Accounts specified"]
    assert any("<5" in m for m in data["method"])


def test_the_golden_report() -> None:
    """The JSON and CSV of a fixed set of records, byte for byte (UPDATE_GOLDEN=1 rewrites)."""
    generated = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    report = build_report(sample(), [region_log()], START, END, "Test cloud", generated, NAMES)
    page = re.sub(r"<svg.*?</svg>", "<svg/>", to_html(report), flags=re.S)
    for name, text in (
        ("report.json", to_json(report)),
        ("report.csv", to_csv(report)),
        ("report.html", page),
    ):
        if os.environ.get("UPDATE_GOLDEN"):
            (GOLDEN / name).write_text(text, encoding="utf-8")
        assert text == (GOLDEN / name).read_text(encoding="utf-8"), name


def test_csv_and_html_follow_the_same_rule() -> None:
    report = build_report(sample(), [region_log()], START, END, names=NAMES)
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["table", "key", "measure", "value"]
    values = {(r[0], r[1], r[2]): r[3] for r in rows[1:]}
    assert values[("by_country", "United States (US)", "requests")] == "<5"
    assert values[("by_country", "Germany (DE)", "requests")] == "12"
    assert values[("checkpoint", "eu-dublin", "size")] == "1234"
    assert not any(
        v in ("1", "2", "3", "4") for (t, _, _), v in values.items() if t != "checkpoint"
    )

    page = to_html(report)
    assert page.count("<svg") >= 4
    assert "1234" in page and "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" in page
    assert '<td class="n">&lt;5</td>' in page
    assert not re.search(r'<td class="n">[1-4]</td>', page)
    assert "Definitions" in page and "referred to the lawful route" in page
    assert to_html(report) == page, "the same report renders to the same bytes"


def test_a_small_count_is_drawn_as_a_band_not_a_bar() -> None:
    _, axes = _figure(4, 2)
    _bar(axes, 0, 3, 0.7, "#000000", vertical=False)
    _bar(axes, 1, 12, 0.7, "#000000", vertical=False)
    band, bar = axes.patches
    assert (band.get_x(), band.get_width()) == (1, 3), "from 1 to 4, whatever the count"
    assert band.get_hatch() and (bar.get_x(), bar.get_width()) == (0, 12)
    _, axes = _figure(4, 2)
    _bar(axes, 0, 1, 0.7, "#000000", vertical=True)
    assert (axes.patches[0].get_y(), axes.patches[0].get_height()) == (1, 3)


def test_period_and_bad_range() -> None:
    report = build_report(sample(), [], date(2025, 7, 1), date(2025, 12, 31), names=NAMES)
    assert table(json.loads(to_json(report)), "by_country") == {
        ("France (FR)",): [6, 6, 0, 6, 0, 0, 0, 0, 0]
    }
    with pytest.raises(ValueError, match="before"):
        build_report([], [], END, START)


def test_region_log_counts_from_a_real_log(cloud: Cloud) -> None:
    vault = cloud.region("eu-dublin").vault
    for _ in range(6):
        vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "imap")
    yesterday = date.today() - timedelta(days=1)
    for until in (yesterday, yesterday, date.today() + timedelta(days=30)):
        vault.release(
            ALICE,
            Justification.THIRD_PARTY_DATA_REQUEST,
            "legal",
            decision_id="req9-item1",
            request_id="req9",
            sealed_until=until,
        )
    vault.reveal_lapsed(date.today())
    log = cloud.region("eu-dublin").transparency_log
    log.checkpoint()
    view = LogSnapshot.load(log.directory, log.verifier_key())
    today = datetime.now(UTC).date()
    got = RegionLog.from_snapshot("eu-dublin", view, today, today)
    assert got.size == 11
    assert got.accesses == {"CUSTOMER_INITIATED_ACCESS": 6, "THIRD_PARTY_DATA_REQUEST": 2}
    assert (got.sealed, got.still_sealed) == (3, 1)
    assert got.requests == {"req9"}
    report = json.loads(to_json(build_report([], [got], today, today)))
    assert table(report, "unknown_requests") == {("eu-dublin",): ["<5"]}
    earlier = RegionLog.from_snapshot("eu-dublin", view, date(2020, 1, 1), date(2020, 1, 2))
    assert earlier.accesses == {} and earlier.sealed == 3


def test_legal_records_become_summaries(cloud: Cloud, tmp_path: Path) -> None:
    deliver(cloud, ALICE, "in scope", "2026-05-01T10:00:00")
    with LegalDesk(cloud) as desk, contextlib.closing(StaffRoster.of(cloud.config)) as roster:
        staff = enroll_staff(roster)
        disclosed = desk.submit(request(reference="IE-1"), staff.ada)
        for reviewer in staff.of("ie-custodian"):
            desk.approve(disclosed.id, reviewer)
        desk.export(disclosed.id, tmp_path / "package", staff.ada)
        refused = desk.submit(request(reference="IE-2"), staff.ada)
        desk.reject(refused.id, staff.ada, "overbroad")
        desk.submit(request(reference="IE-3", accounts=("nobody@example.test",)), staff.ada)
        desk.submit(request(reference="IE-4"), staff.ada)
        wrong_custodian = desk.submit(
            request(
                "us_sca_warrant",
                country="US",
                served_on="us-custodian",
                reference="US-1",
                categories=("content",),
            ),
            staff.cy,
        )
        desk.reject(wrong_custodian.id, staff.cy, "no item may lawfully be disclosed")
        both = desk.submit(
            request(
                "us_sca_warrant",
                country="US",
                served_on="us-custodian",
                reference="US-2",
                accounts=(ALICE, BOB),
                categories=("subscriber",),
            ),
            staff.cy,
        )
        for reviewer in staff.of("us-custodian"):
            desk.approve(both.id, reviewer)
        desk.export(both.id, tmp_path / "package-2", staff.cy)
    got = {s.reference: s for s in legal_requests(cloud.config.cloud.data_dir)}
    assert got["IE-1"].outcome is OutcomeClass.CONTENT
    assert got["IE-1"].decision_ids == ("req1-item1", "req1-item2", "req1-item3")
    assert got["IE-1"].public_id == "req1" and got["IE-1"].accounts == 1
    assert got["IE-1"].locations == ((*DUBLIN, OutcomeClass.CONTENT),)
    assert got["IE-2"].outcome is OutcomeClass.REJECTED
    assert got["IE-2"].refusal_grounds == ("reviewer",)
    assert got["IE-3"].outcome is OutcomeClass.NO_DATA and got["IE-3"].locations == ()
    assert got["IE-4"].outcome is OutcomeClass.PENDING
    assert got["US-1"].outcome is OutcomeClass.REFERRED, "the lawful route is the MLAT"
    # One warrant, two places: Bob's data (US custodian) disclosed, Alice's (Irish) referred.
    assert got["US-2"].outcome is OutcomeClass.NON_CONTENT
    assert got["US-2"].locations == (
        (*DUBLIN, OutcomeClass.REFERRED),
        ("us-east", "us-custodian", OutcomeClass.NON_CONTENT),
    )
    assert got["IE-1"].country == "IE" and got["IE-1"].instrument == "ie_court_order"

    # The export's key release names a request the records know: the cross-check is 0.
    log = cloud.region("eu-dublin").transparency_log
    log.checkpoint()
    view = LogSnapshot.load(log.directory, log.verifier_key())
    today = datetime.now(UTC).date()
    logs = [RegionLog.from_snapshot("eu-dublin", view, today, today)]
    assert logs[0].requests == {"req1"}
    report = json.loads(to_json(build_report(got.values(), logs, date(2026, 11, 1), today)))
    assert table(report, "unknown_requests") == {("eu-dublin",): [0]}
    assert table(report, "by_outcome")[("referred to the lawful route",)] == ["<5", "<5"]


def test_report_command_signs_and_verifies(root: Path) -> None:
    example = Path(__file__).parents[2] / "src/borderline/law/examples/dublin_warrant_today.toml"
    shutil.copy(example, root / "warrant.toml")
    intake = add_staff(root, "Ida", "intake", "us-east")
    submit_as(root, "request", "submit", "warrant.toml", token=intake)
    data = json.loads(
        ok("report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json", cwd=root)
    )
    assert table(data, "by_instrument") == {("SCA search warrant",): ["<5", "<5", *[0] * 6, "<5"]}
    assert {cp["region"] for cp in data["checkpoints"]} == {"us-east", "eu-dublin"}
    out = ok("report", "--from", "2026-11-01", "--to", "2026-11-30", "--out", "r.html", cwd=root)
    assert "wrote r.html" in out and "r.html.sig" in out
    page = (root / "r.html").read_text()
    assert "<svg" in page and "example.test/eu-dublin" in page
    signature = (root / "r.html.sig").read_text()
    assert signature.count("\u2014 example.test/") == 2, "signed by each region's key"
    verified = ok("report", "verify", "r.html", cwd=root)
    assert "signed by every region" in verified and "in its log's history" in verified

    (root / "r.html").write_text(page.replace("transparency report", "transparency rep0rt"))
    assert "hash differs" in fails("report", "verify", "r.html", cwd=root)
    (root / "r.html").write_text(page)
    forged = signature.replace("period 2026-11-01", "period 2026-10-01")
    (root / "r.html.sig").write_text(forged)
    assert "bad signature" in fails("report", "verify", "r.html", cwd=root)
    assert "before" in fails("report", "--from", "2026-11-30", "--to", "2026-11-01", cwd=root)
