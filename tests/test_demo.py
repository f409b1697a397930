"""`make demo` runs `borderline demo --once`: it must succeed and show the boundary held."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from borderline.directory import Directory
from borderline.report.logview import region_verifier_key
from borderline.tlog import verify_checkpoint


def test_demo_once(tmp_path: Path, region_stores: dict[str, str]) -> None:
    stores = [f"--store={region}={url}" for region, url in region_stores.items()]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "borderline",
            "demo",
            "--once",
            "--data-dir",
            str(tmp_path),
            *stores,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"},  # as narrow as a terminal
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "zero hits" in out
    assert "[REFERRAL imap://alice%40example.test@" in out
    assert "CUSTOMER_INITIATED_ACCESS" in out
    assert "— example.test/eu-dublin" in out, "a signed checkpoint is shown"
    # The legal replay: 2013 law refers Alice's data; the MLAT-route order discloses it.
    assert "alice@example.test / content: REFER" in out
    # The rule of 2013, cited as of 2013; the 2016 decision only as later history.
    replay_2013 = out.split("The 2013 Dublin warrant")[1].split("served today")[0]
    assert "presumption against extraterritoriality" in replay_2013
    assert "Morrison v. National Australia Bank" in replay_2013
    why, later = replay_2013.split("later, not the law of 2013-12-04", 1)
    assert "829 F.3d 197" not in why and "829 F.3d 197" in later
    assert out.count("signature verified") == 2
    assert "THIRD_PARTY_DATA_REQUEST, request req2" in out
    assert "deprecated" not in out + result.stderr
    # The sections it prints are the README's steps, in order.
    sections = re.findall(r"^─+ (\d+\. .+?) ─+$", out, re.M)
    readme = (Path(__file__).parents[1] / "README.md").read_text().split("\n## ")[1]
    steps = re.findall(r"^(\d+)\. \*\*(.+?)\*\*", readme, re.M)
    assert sections == [f"{n}. {title}" for n, title in steps] and len(sections) == 6
    assert 'borderline_smtp_messages_total{kind="relay",region="eu-dublin",result="2xx"} 1.0' in out

    # Data is printed whole, never wrapped at 80 columns: the note copied off the screen
    # verifies against the region's published key.
    note = re.search(
        r"^example\.test/eu-dublin\n\d+\n\S+\n\n— example\.test/eu-dublin \S+\n", out, re.M
    )
    assert note is not None, out
    directory = Directory(tmp_path / "data" / "directory.sqlite")
    key = directory.region_keys("eu-dublin").signing_key
    directory.close()
    verify_checkpoint(note.group().encode(), region_verifier_key("example.test/eu-dublin", key))
    assert (tmp_path / "data" / "eu-dublin" / "mail.sqlite").exists() == (not region_stores)
