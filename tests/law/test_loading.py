"""Loading and validating the law data, the Cedar policies and request files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cedarpy
import pytest

from borderline.law import (
    CedarEvaluationError,
    LawEngine,
    LawError,
    RequestFileError,
    explain_json,
    explain_text,
    load_request,
)
from borderline.law.engine import POLICY_DIR
from borderline.law.knowledge import DATA_DIR, LawBook, LawDataError

from .conftest import make_facts, make_request

EXAMPLES = Path(DATA_DIR).parent / "examples"


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
    _edit(policies / "disclose.cedar", "when { context.bound };", "when { principal.bogus };")
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
    _edit(policies / "disclose.cedar", "when { context.bound };", overflow)
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
            r"jurisdictions\.toml: jurisdiction\[1\]\.memberships\[0\]\.until: .*'soon'",
        ),
        (
            "jurisdictions.toml",
            'code = "IE"',
            'code = "Ireland"',
            r"jurisdictions\.toml: jurisdiction\[4\]\.code: .*'Ireland'",
        ),
        (
            "laws.toml",
            "from = 2018-03-23",
            "from = 2018-03-23\nuntil = 2001-01-01",
            r"laws\.toml: law\[7\]: .*'until' \(2001-01-01\) must be after",
        ),
        (
            "instruments.toml",
            'reaches = ["subscriber", "identification"]',
            'reaches = ["subscriber", "metadata"]',
            r"instruments\.toml: instrument\[2\]\.reaches\[1\]: .*'metadata'",
        ),
        (
            "instruments.toml",
            'laws = ["us_sca_2703", "us_warshak"]',
            'laws = ["us_sca_2703", "us_warshack"]',
            r"instruments\.toml: instrument\[0\]\.laws\[1\]: unknown law \(got 'us_warshack'\)",
        ),
        (
            "policies.toml",
            'text = "{instrument}: cannot compel {category} data"',
            'text = "{instrument}: cannot compel {kategory} data"',
            r"policies\.toml: policy\.reach\.category: .*kategory",
        ),
        (
            "policies.toml",
            'role = "route"',
            'role = "route"\nweight = 3',
            r"policies\.toml: policy\.route\.serve_key_holder\.weight: .*3",
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
    ("old", "new", "field"),
    [
        ('served_on = "us-custodian"\n', "", r"instrument\.served_on: Field required"),
        ('categories = ["subscriber"]', 'categories = ["emails"]', r"scope\.categories\[0\]"),
        ('issued_by = "agency"', 'issued_by = "sheriff"', r"instrument\.issued_by: .*'sheriff'"),
        ('country = "US"', 'country = "usa"', r"authority\.country: .*'usa'"),
        ("received = 2026-03-01", 'received = "yesterday"', r"received: .*'yesterday'"),
        ('accounts = ["bob@example.test"]', 'accounts = ["bob"]', r"scope\.accounts: .*'bob'"),
        ("[scope]", 'colour = "red"\n[scope]', r"instrument\.colour: Extra inputs"),
        ('["subscriber"]', '["subscriber", "subscriber"]', r"scope\.categories: .*more than once"),
    ],
)
def test_bad_request_file_names_the_field_and_file(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    path = tmp_path / "request.toml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(RequestFileError, match=field) as info:
        load_request(path)
    assert str(path) in str(info.value)


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
    with pytest.raises(RequestFileError, match=r"request\.json: scope\.from: .*'x'"):
        load_request(path)
    raw["scope"]["from"] = "2026-01-01"  # type: ignore[index]
    path.write_text(json.dumps(raw))
    assert load_request(path).scope.start is not None
    path.write_text("{not json")
    with pytest.raises(RequestFileError, match="not valid json"):
        load_request(path)


def test_unknown_instrument_and_custodian_name_the_field(engine: LawEngine) -> None:
    facts = make_facts()
    unknown_type = make_request(
        "us_letter", "US", "agency", "us-custodian", "2026-01-01", ("content",)
    )
    with pytest.raises(LawError, match=r"instrument\.type: unknown instrument type 'us_letter'"):
        engine.decide(unknown_type, facts)
    unknown_custodian = make_request(
        "us_subpoena", "US", "agency", "mars-custodian", "2026-01-01", ("subscriber",)
    )
    with pytest.raises(LawError, match=r"instrument\.served_on: unknown custodian"):
        engine.decide(unknown_custodian, facts)
    wrong_country = make_request(
        "us_subpoena", "FR", "agency", "us-custodian", "2026-01-01", ("subscriber",)
    )
    with pytest.raises(LawError, match=r"authority\.country"):
        engine.decide(wrong_country, facts)


@pytest.mark.parametrize(
    ("example", "dublin_keys", "outcomes"),
    [
        ("dublin_warrant_2013.toml", "us-custodian", ["disclose", "disclose", "reject"]),
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
    text = explain_text(request, decisions)
    assert request.reference in text
    assert text.count("policies: ") == len(decisions)


def test_docs_list_every_policy() -> None:
    docs = Path(__file__).parents[2] / "docs" / "law.md"
    listed = set(re.findall(r"^\| `([^`]+)` \|", docs.read_text(), flags=re.MULTILINE))
    assert listed == set(LawBook().policies)
