"""`make demo` runs `borderline demo --once`: it must succeed and show the boundary held."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "zero hits" in out
    assert "[REFERRAL imap://alice%40example.test@" in out
    assert "CUSTOMER_INITIATED_ACCESS" in out
    assert "— example.test/eu-dublin" in out, "a signed checkpoint is shown"
    # The legal replay: 2013 law refers Alice's data; the MLAT-route order discloses it.
    assert "alice@example.test / content: REFER" in out
    assert out.count("signature verified") == 2
    assert "THIRD_PARTY_DATA_REQUEST, decision req2-item3" in out
    assert (tmp_path / "data" / "eu-dublin" / "mail.sqlite").exists() == (not region_stores)
