"""Loading and validating the law data, the Cedar policies and request files."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import cedarpy
import pytest

from borderline.law import (
    CedarEvaluationError,
    LawEngine,
    LawError,
    LegalRequest,
    Obligation,
    RequestFileError,
    explain_json,
    explain_text,
    load_request,
)
from borderline.law.engine import POLICY_DIR
from borderline.law.knowledge import DATA_DIR, EXAMPLES, LawBook, LawDataError
from borderline.law.request import STORED

from .conftest import make_facts, make_request

BOUND = 'when { context.bound && principal.family != "voluntary" };'


def _copy_law(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    policies = tmp_path / "policies"
    shutil.copytree(DATA_DIR, data)
    shutil.copytree(POLICY_DIR, policies)
    return data, policies


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_policies_pass_schema_validation() -> None:
    text = "\n".join(p.read_text() for p in sorted(POLICY_DIR.glob("*.cedar")))
    result = cedarpy.validate_policies(text, (POLICY_DIR / "schema.json").read_text())
    assert result.validation_passed, [str(e) for e in result.errors]


def test_every_policy_id_is_mapped_to_data_and_laws_exist() -> None:
    text = "\n".join(p.read_text() for p in sorted(POLICY_DIR.glob("*.cedar")))
    book = LawBook()
    ids = re.findall(r'@id\("([^"]+)"\)', text)
    assert len(ids) == len(set(ids)) == text.count("permit (") + text.count("forbid (")
    for pid in ids:
        assert pid in book.policies
    for law in re.findall(r'Law::"([^"]+)"', text):
        assert law in book.laws


def test_schema_violation_fails_load_naming_the_policy(tmp_path: Path) -> None:
    data, policies = _copy_law(tmp_path)
    _edit(policies / "disclose.cedar", BOUND, "when { principal.bogus };")
    with pytest.raises(LawDataError, match=r"disclose\.compelled.*bogus"):
        LawEngine.load(data, policies)


def test_policy_without_data_entry_fails_load(tmp_path: Path) -> None:
    data, policies = _copy_law(tmp_path)
    extra = '@id("x.unmapped")\nforbid (principal, action, resource) when { false };\n'
    (policies / "extra.cedar").write_text(extra)
    with pytest.raises(LawDataError, match=r"x\.unmapped"):
        LawEngine.load(data, policies)


def test_cedar_evaluation_error_raises_instead_of_denying(tmp_path: Path) -> None:
    data, policies = _copy_law(tmp_path)
    overflow = "when { context.bound && 9223372036854775807 + 1 > 0 };"
    _edit(policies / "disclose.cedar", BOUND, overflow)
    engine = LawEngine.load(data, policies)
    request = make_request(
        "us_sca_warrant", "US", "judge", "us-custodian", "2026-03-01", ("content",),
        accounts=("bob@example.test",),
    )  # fmt: skip
    with pytest.raises(CedarEvaluationError, match="overflow"):
        engine.decide(request, make_facts())


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "jurisdictions.toml",
            '{ bloc = "EU", from = 1973-01-01, until = 2020-02-01 }',
            '{ bloc = "EU", from = 1973-01-01, until = "soon" }',
            r'jurisdictions\.toml: jurisdiction\[1\]\.memberships\[0\]\.until: .*"soon"',
        ),
        (
            "jurisdictions.toml",
            'code = "IE"',
            'code = "Ireland"',
            r'jurisdictions\.toml: jurisdiction\[4\]\.code: .*country code.*"Ireland"',
        ),
        (
            "laws.toml",
            "from = 2018-03-23",
            "from = 2018-03-23\nuntil = 2001-01-01",
            r"laws\.toml: law\[11\]: .*'until' \(2001-01-01\) must be after",
        ),
        (
            "instruments.toml",
            'reaches = ["subscriber", "identification"]',
            'reaches = ["subscriber", "metadata"]',
            r'instruments\.toml: instrument\[2\]\.reaches\[1\]: .*"metadata"',
        ),
        (
            "instruments.toml",
            'laws = ["us_sca_2703", "us_warshak"]',
            'laws = ["us_sca_2703", "us_warshack"]',
            r'instruments\.toml: instrument\[0\]\.laws\[1\]: unknown law \(got "us_warshack"\)',
        ),
        (
            "policies.toml",
            'text = "The {instrument} cannot compel {category} data."',
            'text = "The {instrument} cannot compel {kategory} data."',
            r"policies\.toml: policy\.reach\.category: .*kategory",
        ),
        (
            "policies.toml",
            'role = "route"',
            'role = "route"\nweight = 3',
            r"policies\.toml: policy\.route\.after_period\.weight: unknown field",
        ),
    ],
)
def test_bad_data_file_names_file_key_and_value(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    data, _ = _copy_law(tmp_path)
    _edit(data / file, old, new)
    with pytest.raises(LawDataError, match=message):
        LawBook(data)


NOW = datetime(2026, 12, 1, tzinfo=UTC)
GOOD = """\
reference = "R-1"
received = 2026-03-01
[authority]
name = "FBI"
country = "US"
kind = "agency"
[instrument]
type = "us_subpoena"
issued_by = "agency"
served_on = "us-custodian"
[scope]
accounts = ["bob@example.test"]
categories = ["subscriber"]
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'served_on = "us-custodian"\n',
            "",
            r"instrument\.served_on: required, but missing$",
        ),
        (
            'categories = ["subscriber"]',
            'categories = ["emails"]',
            r"scope\.categories\[0\]: must be one of 'subscriber', .* \(got \"emails\"\)$",
        ),
        ('issued_by = "agency"', 'issued_by = "sheriff"', r'instrument\.issued_by: .*"sheriff"'),
        ('country = "US"', 'country = "usa"', r'authority\.country: .*country code.*"usa"'),
        ("received = 2026-03-01", 'received = "yesterday"', r'received: .*\(got "yesterday"\)'),
        ('accounts = ["bob@example.test"]', 'accounts = ["bob"]', r'scope\.accounts: .*"bob"'),
        (
            "[scope]",
            'colour = "red"\n[scope]',
            r"instrument\.colour: unknown field \(allowed here: by_information_system, citation,",
        ),
        ('["subscriber"]', '["subscriber", "subscriber"]', r"scope\.categories: .*more than once"),
        ("[authority]", 'emergency = "yes"\n[authority]', r'emergency: .*true or false.*"yes"'),
        ("[authority]", "emergency = 1\n[authority]", r"emergency: .*true or false \(got 1\)"),
        (
            "[authority]",
            "emergency = true\n[authority]",
            r"\(top level\): an emergency must state the danger",
        ),
        (
            "[authority]",
            'danger = "a bomb threat"\n[authority]',
            r"'danger' is given but 'emergency' is not true",
        ),
        (
            "received = 2026-03-01",
            "received = 2026-02-30",
            r"received: 2026-02-30 is not a date: day 30 does not exist: February 2026 has 28",
        ),
        ("received = 2026-03-01", "received = 2026-13-01", r"received: .*there is no month 13"),
        (
            'categories = ["subscriber"]',
            'categories = ["subscriber"]\nfrom = 2026-04-31',
            r"scope\.from: 2026-04-31 is not a date: .*April 2026 has 30 days",
        ),
        (
            "received = 2026-03-01",
            "received = 2026-03-01T25:00:00Z",
            r"received: .*there is no hour 25",
        ),
        ("received = 2026-03-01", "received = 2031-01-01", r"received: 2031-01-01.* in the future"),
        (
            'served_on = "us-custodian"',
            'served_on = "us-custodian"\nmax_penalty_years = "3"',
            r'instrument\.max_penalty_years: must be a whole number \(got "3"\)',
        ),
    ],
)
def test_bad_request_file_names_the_field_and_file(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = tmp_path / "request.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(RequestFileError) as info:
        load_request(path, now=NOW)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines  # one message per error
    assert lines[0].startswith(f"{path}: ")
    assert re.search(message, lines[0]), lines[0]
    assert not re.search(r"datetime\.|\{'|\[\'", lines[0]), "no Python objects in errors"


def test_good_request_file_and_emergency(tmp_path: Path) -> None:
    path = tmp_path / "request.toml"
    path.write_text(GOOD)
    assert load_request(path, now=NOW).emergency is False
    path.write_text(
        GOOD.replace("[authority]", 'emergency = true\ndanger = "a kidnap"\n[authority]')
    )
    request = load_request(path, now=NOW)
    assert request.emergency is True and request.danger == "a kidnap"


def test_json_request_file(tmp_path: Path) -> None:
    raw = {
        "reference": "R-2",
        "received": "2026-03-01T08:00:00Z",
        "authority": {"name": "FBI", "country": "US", "kind": "agency"},
        "instrument": {"type": "us_subpoena", "issued_by": "agency", "served_on": "us-custodian"},
        "scope": {"accounts": ["bob@example.test"], "categories": ["subscriber"], "from": "x"},
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RequestFileError, match=r'request\.json: scope\.from: .*\(got "x"\)'):
        load_request(path, now=NOW)
    raw["scope"]["from"] = "2026-02-29"  # type: ignore[index]
    path.write_text(json.dumps(raw))
    with pytest.raises(RequestFileError, match=r"scope\.from: 2026-02-29 .*February 2026 has 28"):
        load_request(path, now=NOW)
    raw["scope"]["from"] = "2026-01-01"  # type: ignore[index]
    raw["emergency"] = "true"
    path.write_text(json.dumps(raw))
    with pytest.raises(RequestFileError, match=r'emergency: must be true or false \(got "true"\)'):
        load_request(path, now=NOW)
    del raw["emergency"]
    path.write_text(json.dumps(raw))
    assert load_request(path, now=NOW).scope.start is not None
    path.write_text("{not json")
    with pytest.raises(RequestFileError, match="not valid JSON"):
        load_request(path)


def test_unknown_ids_name_the_file_field_and_the_known_ones(engine: LawEngine) -> None:
    facts = make_facts()
    cases = [
        (
            make_request("us_letter", "US", "agency", "us-custodian", "2026-01-01", ("content",)),
            r'<test>: instrument\.type: unknown instrument type "us_letter" \(known: '
            r"au_international_production_order, ch_order, .*us_subpoena\)",
        ),
        (
            make_request(
                "us_subpoena", "US", "agency", "mars-custodian", "2026-01-01", ("subscriber",)
            ),
            r'<test>: instrument\.served_on: unknown custodian "mars-custodian" \(known: '
            r"ch-custodian, ie-custodian, us-custodian\)",
        ),
        (
            make_request("us_subpoena", "XX", "agency", "us-custodian", "2026-01-01", ("content",)),
            r'<test>: authority\.country: unknown jurisdiction "XX" \(known: AT, AU, .*, US\)',
        ),
        (
            make_request(
                "eu_epoc", "FR", "judge", "ie-custodian", "2026-09-01", ("content",),
                listed_offence="tax_fraud",
            ),
            r'instrument\.listed_offence: unknown listed offence "tax_fraud" \(known: '
            r"attacks_on_information_systems, child_sexual_abuse, non_cash_payment_fraud,",
        ),
        (
            make_request("us_subpoena", "FR", "agency", "us-custodian", "2026-01-01", ("content",)),
            r"<test>: authority\.country: a us_subpoena is issued in US, not by an authority of"
            r" France \(FR\)",
        ),
    ]  # fmt: skip
    for request, message in cases:
        with pytest.raises(LawError, match=message):
            engine.decide(request, facts)


@pytest.mark.parametrize(
    ("example", "dublin_keys", "outcomes"),
    [
        ("dublin_warrant_2013.toml", "us-custodian", ["disclose", "disclose", "refer"]),
        ("dublin_warrant_2013.toml", "ie-custodian", ["refer", "refer", "refer"]),
        ("dublin_warrant_today.toml", "ie-custodian", ["refer", "refer", "disclose", "disclose"]),
        ("irish_court_order_mlat.toml", "ie-custodian", ["disclose", "disclose", "disclose"]),
    ],
)
def test_examples_replay(
    engine: LawEngine, example: str, dublin_keys: str, outcomes: list[str]
) -> None:
    request = load_request(EXAMPLES / example)
    decisions = engine.decide(request, make_facts(dublin_keys))
    assert [d.outcome for d in decisions] == outcomes
    document = explain_json(request, decisions)
    assert json.loads(json.dumps(document))["decisions"][0]["policy_ids"]
    text = explain_text(request, decisions, engine.book)
    assert request.reference in text
    assert text.count("Policies: ") == len(decisions)
    for d in decisions:  # every refusal states its lawful route in the text
        assert d.outcome in ("disclose", "preserve") or f"Lawful route: {d.route}" in text


def test_docs_list_every_policy() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "law.md").read_text()
    table = docs.split("\n## Policies\n")[1].split("\n## ")[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))
    assert listed == set(LawBook().policies)


def test_records_from_before_this_version_still_load() -> None:
    """An Art. 8 obligation recorded without `holds_transfer` still holds the transfer, and a
    stored emergency request without a stated danger still loads."""
    old = {"policy_id": "eu.eevidence.art8_notification", "text": "t", "due": None}
    assert Obligation.model_validate({**old, "citations": []}).holds_transfer
    other = {**old, "policy_id": "us.cloud.comity_motion", "citations": []}
    assert not Obligation.model_validate(other).holds_transfer
    stored = json.loads(load_request(EXAMPLES / "dublin_warrant_2013.toml").model_dump_json())
    stored["emergency"] = True
    request = LegalRequest.model_validate_json(json.dumps(stored), context={STORED: True})
    assert request.emergency and request.danger is None
