"""The replay `borderline demo` prints: both example requests, end to end."""

from __future__ import annotations

from pathlib import Path

from borderline.cli.legal_demo import demo_replay
from borderline.cloud import Cloud


def test_demo_replay(cloud: Cloud, tmp_path: Path) -> None:
    lines = demo_replay(cloud, tmp_path / "out")
    text = "\n".join(lines)
    assert text.count("signature verified") == 2
    assert "alice@example.test / content: REFER [eu-dublin, keys: ie-custodian]" in text
    assert "alice@example.test / content: DISCLOSE [eu-dublin, keys: ie-custodian]" in text
    assert text.count("two-person rule: ") == 2
    assert text.count("THIRD_PARTY_DATA_REQUEST, request req") == 2
    assert "1 message(s) in scope" in text  # the 2025 message is outside the scope
    # The US package holds only Bob's mail; the Irish one only Alice's.
    us, ie = sorted((tmp_path / "out").iterdir())
    assert [p.parent.parent.name for p in us.rglob("*.eml")] == ["bob@example.test"]
    assert [p.parent.parent.name for p in ie.rglob("*.eml")] == ["alice@example.test"]
