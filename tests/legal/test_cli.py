"""The legal commands as an operator runs them: `python -m borderline ...` in a fresh folder,
each step done by a staff member with their own token."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyotp

from borderline.cli.legal_demo import DUBLIN_WARRANT, MLAT_ORDER

PASSWORD = "staff password 1"


def borderline(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "BORDERLINE_STAFF_PASSWORD": PASSWORD}
    if token:
        env["BORDERLINE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "borderline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def ok(cwd: Path, *args: str, token: str | None = None) -> str:
    done = borderline(*args, cwd=cwd, token=token)
    assert done.returncode == 0, done.stderr
    return done.stdout


def error(cwd: Path, *args: str, token: str | None = None) -> str:
    done = borderline(*args, cwd=cwd, token=token)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def add_staff(cwd: Path, name: str, roles: str, region: str) -> str:
    """A staff account and its token, logged in with password and TOTP code."""
    added = json.loads(ok(cwd, "staff", "add", name, "--role", roles, "--region", region, "--json"))
    code = pyotp.TOTP(added["totp_secret"]).now()
    return ok(cwd, "staff", "token", str(added["id"]), "--code", code).strip()


def cloud_with_staff(cwd: Path, people: int = 2) -> list[str]:
    """A cloud with Alice (whom the example orders name) and the tokens of the Irish
    custodian's reviewers: Ada (intake, legal) and Ben (security)."""
    ok(cwd, "init")
    ok(
        cwd,
        "account",
        "add",
        "alice@example.test",
        "--region",
        "eu-dublin",
        "--password",
        "long enough",
    )
    reviewers = (("Ada", "intake,legal-reviewer"), ("Ben", "security-reviewer"))
    return [add_staff(cwd, name, roles, "eu-dublin") for name, roles in reviewers[:people]]


def test_request_round_trip(tmp_path: Path) -> None:
    ada, ben = cloud_with_staff(tmp_path)
    explained = json.loads(ok(tmp_path, "law", "explain", str(DUBLIN_WARRANT), "--json"))
    outcomes = [(d["item"]["account"], d["outcome"]) for d in explained["decisions"]]
    assert outcomes.count(("alice@example.test", "refer")) == 2

    bad = tmp_path / "bad.toml"
    bad.write_text(MLAT_ORDER.read_text().replace('issued_by = "judge"', 'issued_by = "mayor"'))
    assert "instrument.issued_by" in error(tmp_path, "request", "submit", str(bad), token=ada)

    order = tmp_path / "order.toml"
    shutil.copy(MLAT_ORDER, order)
    assert "log in first" in error(tmp_path, "request", "submit", str(order))
    assert "needs the role intake" in error(tmp_path, "request", "submit", str(order), token=ben)
    submitted = json.loads(ok(tmp_path, "request", "submit", str(order), "--json", token=ada))
    rid = str(submitted["id"])
    assert submitted["state"] == "decided"
    assert {i["outcome"] for i in submitted["items"]} == {"disclose"}

    assert "other reviewer role" in ok(tmp_path, "request", "approve", rid, token=ada)
    assert "already approved" in error(tmp_path, "request", "approve", rid, token=ada)
    ok(tmp_path, "request", "approve", rid, token=ben)

    exported = json.loads(
        ok(tmp_path, "request", "export", rid, "--out", str(tmp_path / "out"), "--json", token=ben)
    )
    assert [(e["region"], e["ok"]) for e in exported] == [("eu-dublin", True)]
    folder = exported[0]["folder"]
    assert json.loads(ok(tmp_path, "request", "verify", folder, "--json"))["ok"] is True
    other_key = "11" * 32
    assert f"which is not the key given (--key) ({other_key})" in error(
        tmp_path, "request", "verify", folder, "--key", other_key
    )

    ok(tmp_path, "request", "close", rid, token=ada)
    shown = json.loads(ok(tmp_path, "request", "show", rid, "--json", token=ada))
    assert shown["state"] == "closed"
    assert shown["approvers"] == ["Ada (staff 1)", "Ben (staff 2)"]
    exporter = next(h for h in shown["history"] if h["state"] == "fulfilled")
    assert exporter["actor"] == "Ben (staff 2)"
    assert [a["action"] for a in shown["actions"]] == [
        "submit",
        "decide",
        "approve",
        "approve",
        "export",
        "close",
    ]
    notices = json.loads(ok(tmp_path, "request", "notifications", "--json", token=ada))
    assert [n["account"] for n in notices] == ["alice@example.test"]
    ok(tmp_path, "request", "notified", str(notices[0]["id"]), token=ada)
    assert json.loads(ok(tmp_path, "request", "notifications", "--json", token=ada)) == []


def test_staff_accounts_and_look_alike_names(tmp_path: Path) -> None:
    ada, ben = cloud_with_staff(tmp_path)
    assert "is staff 1, 'Ada'" in error(
        tmp_path, "staff", "add", "\u0410da", "--role", "auditor", "--region", "eu-dublin"
    )
    admin = add_staff(tmp_path, "Dee Admin", "admin", "eu-dublin")
    # Once the custodian has an admin, only an admin of it changes its staff.
    assert "run this with an admin's --token" in error(
        tmp_path, "staff", "add", "Eve", "--role", "auditor", "--region", "eu-dublin"
    )
    assert "may not manage staff" in error(tmp_path, "staff", "disable", "2", token=ada)
    ok(tmp_path, "staff", "disable", "2", token=admin)
    listed = json.loads(ok(tmp_path, "staff", "list", "--json"))
    assert [(m["name"], m["disabled_at"] is None) for m in listed] == [
        ("Ada", True),
        ("Ben", False),
        ("Dee Admin", True),
    ]
    assert "unknown or expired token" in error(tmp_path, "request", "list", token=ben)


def test_commands_reach_the_running_server(tmp_path: Path) -> None:
    """While `borderline serve` holds the logs, the legal commands act through its API (an
    export used to fail with a LogLockedError traceback)."""
    ada, ben = cloud_with_staff(tmp_path)
    order = tmp_path / "order.toml"
    shutil.copy(MLAT_ORDER, order)
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("serving"):
                break
        rid = str(
            json.loads(ok(tmp_path, "request", "submit", str(order), "--json", token=ada))["id"]
        )
        ok(tmp_path, "request", "approve", rid, token=ada)
        ok(tmp_path, "request", "approve", rid, token=ben)
        out = tmp_path / "out"
        exported = json.loads(
            ok(tmp_path, "request", "export", rid, "--out", str(out), "--json", token=ben)
        )
        assert [(e["region"], e["ok"]) for e in exported] == [("eu-dublin", True)]
        assert Path(exported[0]["folder"]).parent == out
        assert json.loads(ok(tmp_path, "request", "verify", exported[0]["folder"], "--json"))["ok"]
        assert "is fulfilled" in error(tmp_path, "request", "approve", rid, token=ada)
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
    assert "Traceback" not in (server.stderr.read() if server.stderr else "")
    # Offline again: the same commands work without the server.
    assert json.loads(ok(tmp_path, "request", "show", rid, "--json", token=ada))["state"] == (
        "fulfilled"
    )


def test_untrusted_text_is_printed_not_interpreted(tmp_path: Path) -> None:
    """An authority writes the reference and staff write reasons: rich markup in them
    (a stray closing tag crashed every later listing; a link tag was rendered) prints as is."""
    (ada,) = cloud_with_staff(tmp_path, people=1)
    eve = add_staff(tmp_path, "[/bold] Eve", "intake,legal-reviewer", "eu-dublin")
    order = tmp_path / "order.toml"
    order.write_text(
        MLAT_ORDER.read_text().replace('reference = "', 'reference = "[/] [bold]x[/bold] ', 1)
    )
    rid = str(json.loads(ok(tmp_path, "request", "submit", str(order), "--json", token=ada))["id"])
    link = "[link=https://evil.example]click[/link]"
    ok(tmp_path, "request", "reject", rid, "--reason", link, token=eve)
    listed = ok(tmp_path, "request", "list", token=ada)
    assert "[/] [bold]x[/bold]" in listed
    shown = ok(tmp_path, "request", "show", rid, token=ada)
    assert "[/] [bold]x[/bold]" in shown and link in shown and "[/bold] Eve" in shown
