"""The `borderline` command as a user runs it: init, accounts, one-line errors, JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from borderline.cloud import Cloud
from borderline.config import load_config


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "borderline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_init_then_accounts(tmp_path: Path) -> None:
    assert run("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "borderline.toml").exists()
    again = run("init", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr

    added = run(
        "account",
        "add",
        "alice@example.test",
        "--region",
        "eu-dublin",
        "--password",
        "long enough pw",
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    duplicate = run(
        "account",
        "add",
        "ALICE@example.test",
        "--region",
        "us-east",
        "--password",
        "long enough pw",
        cwd=tmp_path,
    )
    assert duplicate.returncode == 1
    assert "already exists, homed in eu-dublin" in duplicate.stderr
    assert len(duplicate.stderr.strip().splitlines()) == 1

    listed = json.loads(run("account", "list", "--json", cwd=tmp_path).stdout)
    assert listed == [{"address": "alice@example.test", "region": "eu-dublin"}]
    shown = json.loads(run("account", "show", "alice@example.test", "--json", cwd=tmp_path).stdout)
    assert shown["region"] == "eu-dublin" and shown["custodian"] == "Borderline Ireland Ltd"
    assert [m["name"] for m in shown["mailboxes"]] == ["Drafts", "INBOX", "Junk", "Sent", "Trash"]
    # Data only in the home region's folder; the other region knows nothing of alice.
    assert not any(
        b"alice" in p.read_bytes() for p in (tmp_path / "data/us-east").rglob("*") if p.is_file()
    )


def test_errors_are_one_line_with_nonzero_exit(tmp_path: Path) -> None:
    missing = run("account", "list", cwd=tmp_path)
    assert missing.returncode == 1 and "borderline init" in missing.stderr
    run("init", cwd=tmp_path)
    for args, reason in [
        (
            ("account", "add", "bad-address", "-r", "eu-dublin", "--password", "12345678"),
            "not a valid mail address",
        ),
        (
            ("account", "add", "x@other.org", "-r", "eu-dublin", "--password", "12345678"),
            "not a domain of this cloud",
        ),
        (
            ("account", "add", "x@example.test", "-r", "mars", "--password", "12345678"),
            "region 'mars' is not served here",
        ),
        (
            ("account", "add", "x@example.test", "-r", "us-east", "--password", "short"),
            "at least 8",
        ),
        (("account", "show", "nobody@example.test"), "no account"),
    ]:
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 1, args
        assert reason in result.stderr, (args, result.stderr)


def test_aliases_passwords_and_deleting_an_account(tmp_path: Path) -> None:
    run("init", cwd=tmp_path)
    pw = ("--password", "long enough pw")
    added = run("account", "add", "alice@example.test", "-r", "eu-dublin", *pw, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    aliased = run("alias", "add", "Al@example.test", "alice@example.test", cwd=tmp_path)
    assert aliased.returncode == 0, aliased.stderr
    listed = json.loads(run("alias", "list", "--json", cwd=tmp_path).stdout)
    assert listed == [{"alias": "al@example.test", "account": "alice@example.test"}]
    assert run("alias", "remove", "al@example.test", cwd=tmp_path).returncode == 0

    new = "a new one!"
    changed = run("account", "passwd", "alice@example.test", "--password", new, cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    with Cloud(load_config(tmp_path / "borderline.toml")) as cloud:
        region = cloud.region("eu-dublin")
        assert region.check_password("alice@example.test", new)
        assert not region.check_password("alice@example.test", "long enough pw")
    deleted = run("account", "delete", "alice@example.test", "--yes", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert "log entry" in deleted.stdout
    gone = run("account", "passwd", "alice@example.test", "--password", new, cwd=tmp_path)
    assert gone.returncode == 1 and "no account alice@example.test" in gone.stderr
