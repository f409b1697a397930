"""Transparency reports: grouping, the "<5" rule, formats, logs and legal records as sources."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.legal import LegalDesk
from borderline.report import LogSnapshot
from borderline.report.render import to_csv, to_html, to_json
from borderline.report.sources import legal_requests
from borderline.report.transparency import (
    OutcomeClass,
    RegionLog,
    RequestSummary,
    build_report,
    shown,
)
from borderline.staff import StaffRoster
from borderline.vault import Justification
from tests.legal.conftest import FAST, deliver, enroll_staff, request
from tests.legal.test_cli import add_staff
from tests.legal.test_cli import ok as submit_as
from tests.report.conftest import fails, ok

START, END = date(2026, 1, 1), date(2026, 12, 31)
ROOT = bytes(range(32))


def summary(n: int, **fields: object) -> RequestSummary:
    base: dict[str, object] = {
        "reference": f"R-{n}",
        "received": date(2026, 3, 1),
        "country": "DE",
        "instrument": "eu_epoc",
        "addressee": "ie-custodian",
        "outcome": OutcomeClass.NON_CONTENT,
        "categories": ("subscriber",),
    }
    base.update(fields)
    return RequestSummary(**base)  # type: ignore[arg-type]


def sample() -> list[RequestSummary]:
    german = [summary(i) for i in range(7)]
    us = [
        summary(10, country="US", instrument="us_sca_warrant", outcome=OutcomeClass.REJECTED),
        summary(11, country="US", instrument="us_subpoena", outcome=OutcomeClass.NO_DATA),
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
    outside = [summary(30, received=date(2025, 12, 31), country="FR")]
    return german + us + refused + outside


def region_log(**fields: object) -> RegionLog:
    base: dict[str, object] = {
        "region": "eu-dublin",
        "origin": "example.test/eu-dublin",
        "size": 1234,
        "root": ROOT,
        "accesses": {"CUSTOMER_INITIATED_ACCESS": 900, "THIRD_PARTY_DATA_REQUEST": 2},
        "sealed": 3,
        "still_sealed": 0,
    }
    base.update(fields)
    return RegionLog(**base)  # type: ignore[arg-type]


def table(data: dict[str, object], title_start: str) -> dict[tuple[str, ...], object]:
    tables = data["tables"]
    assert isinstance(tables, list)
    for t in tables:
        if t["title"].startswith(title_start):
            return {tuple(row[:-1]): row[-1] for row in t["rows"]}
    raise AssertionError(f"no table {title_start!r}")


def test_small_counts_rule() -> None:
    assert [shown(n) for n in (0, 1, 4, 5, 6, 1000)] == [0, "<5", "<5", 5, 6, 1000]


def test_groups_and_small_counts_in_json() -> None:
    report = build_report(sample(), [region_log()], START, END, "Test cloud")
    data = json.loads(to_json(report))
    assert data["checkpoints"] == [
        {
            "region": "eu-dublin",
            "origin": "example.test/eu-dublin",
            "size": 1234,
            "root": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        }
    ]
    assert table(data, "Requests by country") == {("DE",): 12, ("US",): "<5"}
    assert table(data, "Requests by outcome") == {
        ("rejected",): 6,
        ("no data found",): "<5",
        ("non-content disclosed",): 7,
        ("content disclosed",): 0,
        ("preserved only",): 0,
        ("pending",): 0,
    }
    assert table(data, "Requests by instrument") == {
        ("eu_epoc",): 12,
        ("us_sca_warrant",): "<5",
        ("us_subpoena",): "<5",
    }
    art28 = table(data, "e-Evidence orders (")
    assert art28 == {
        ("EPOC (production)", "subscriber", "ie-custodian", "normal", "fulfilled"): 7,
        ("EPOC (production)", "traffic", "ie-custodian", "emergency", "not fulfilled"): 5,
        ("EPOC (production)", "content", "ie-custodian", "emergency", "not fulfilled"): 5,
    }
    assert table(data, "e-Evidence orders refused") == {("ee.epoc.judge_required",): 5}
    assert table(data, "Key releases") == {
        ("eu-dublin", "CUSTOMER_INITIATED_ACCESS"): 900,
        ("eu-dublin", "THIRD_PARTY_DATA_REQUEST"): "<5",
    }
    assert table(data, "Sealed accesses") == {
        ("eu-dublin", "logged as a commitment"): "<5",
        ("eu-dublin", "still sealed"): 0,
    }


def test_csv_and_html_follow_the_same_rule() -> None:
    report = build_report(sample(), [region_log()], START, END)
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["table", "key", "value"]
    values = {(r[0], r[1]): r[2] for r in rows[1:]}
    assert values[("Requests by country of the issuing authority", "US")] == "<5"
    assert values[("Requests by country of the issuing authority", "DE")] == "12"
    assert values[("checkpoint", "eu-dublin size")] == "1234"
    assert not any(v in ("1", "2", "3", "4") for (t, _), v in values.items() if t != "checkpoint")

    page = to_html(report)
    assert page.count("<svg") >= 4
    assert "size 1234" in page and "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" in page
    assert '<td class="n">&lt;5</td>' in page
    assert '<td class="n">2</td>' not in page


def test_period_and_bad_range() -> None:
    report = build_report(sample(), [], date(2025, 12, 1), date(2025, 12, 31))
    assert table(json.loads(to_json(report)), "Requests by country") == {("FR",): "<5"}
    with pytest.raises(ValueError, match="before"):
        build_report([], [], END, START)


def test_region_log_counts_from_a_real_log(cloud: Cloud) -> None:
    vault = cloud.region("eu-dublin").vault
    for _ in range(6):
        vault.release("alice@example.test", Justification.CUSTOMER_INITIATED_ACCESS, "imap")
    yesterday = date.today() - timedelta(days=1)
    for until in (yesterday, yesterday, date.today() + timedelta(days=30)):
        vault.release(
            "alice@example.test",
            Justification.THIRD_PARTY_DATA_REQUEST,
            "legal",
            decision_id="req9-item1",
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
    assert got.decisions == {"req9-item1"}
    report = json.loads(to_json(build_report([], [got], today, today)))
    assert table(report, "Lawful key releases naming") == {("eu-dublin",): "<5"}
    earlier = RegionLog.from_snapshot("eu-dublin", view, date(2020, 1, 1), date(2020, 1, 2))
    assert earlier.accesses == {} and earlier.sealed == 3


def test_legal_records_become_summaries(cloud: Cloud, tmp_path: Path) -> None:
    deliver(cloud, "alice@example.test", "in scope", "2026-05-01T10:00:00")
    with LegalDesk(cloud) as desk, contextlib.closing(StaffRoster.of(cloud.config, FAST)) as roster:
        staff = enroll_staff(roster)
        disclosed = desk.submit(request(reference="IE-1"), staff.ada)
        for reviewer in staff.of("ie-custodian"):
            desk.approve(disclosed.id, reviewer)
        desk.export(disclosed.id, tmp_path / "package", staff.ada)
        refused = desk.submit(request(reference="IE-2"), staff.ada)
        desk.reject(refused.id, staff.ada, "overbroad")
        desk.submit(request(reference="IE-3", accounts=("nobody@example.test",)), staff.ada)
        desk.submit(request(reference="IE-4"), staff.ada)
    got = {s.reference: s for s in legal_requests(cloud.config.cloud.data_dir)}
    assert got["IE-1"].outcome is OutcomeClass.CONTENT
    assert got["IE-1"].decision_ids == ("req1-item1", "req1-item2", "req1-item3")
    assert got["IE-2"].outcome is OutcomeClass.REJECTED
    assert got["IE-2"].refusal_grounds == ("reviewer",)
    assert got["IE-3"].outcome is OutcomeClass.NO_DATA
    assert got["IE-4"].outcome is OutcomeClass.PENDING
    assert got["IE-1"].country == "IE" and got["IE-1"].instrument == "ie_court_order"

    # The export's key release names a decision the records know: the cross-check is 0.
    log = cloud.region("eu-dublin").transparency_log
    log.checkpoint()
    view = LogSnapshot.load(log.directory, log.verifier_key())
    today = datetime.now(UTC).date()
    logs = [RegionLog.from_snapshot("eu-dublin", view, today, today)]
    assert logs[0].decisions <= set(got["IE-1"].decision_ids) and logs[0].decisions
    report = json.loads(to_json(build_report(got.values(), logs, date(2026, 11, 1), today)))
    assert table(report, "Lawful key releases naming") == {("eu-dublin",): 0}
    assert table(report, "Requests by outcome")[("content disclosed",)] == "<5"


def test_report_command(root: Path) -> None:
    example = Path(__file__).parents[2] / "src/borderline/law/examples/dublin_warrant_today.toml"
    shutil.copy(example, root / "warrant.toml")
    intake = add_staff(root, "Ida", "intake", "us-east")
    submit_as(root, "request", "submit", "warrant.toml", token=intake)
    data = json.loads(
        ok("report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json", cwd=root)
    )
    assert table(data, "Requests by instrument") == {("us_sca_warrant",): "<5"}
    assert {cp["region"] for cp in data["checkpoints"]} == {"us-east", "eu-dublin"}
    out = ok("report", "--from", "2026-11-01", "--to", "2026-11-30", "--out", "r.html", cwd=root)
    assert "wrote r.html" in out
    page = (root / "r.html").read_text()
    assert "<svg" in page and "example.test/eu-dublin" in page
    assert "before" in fails("report", "--from", "2026-11-30", "--to", "2026-11-01", cwd=root)
