"""The legal commands as an operator runs them: `python -m borderline ...` in a fresh folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from borderline.cli.legal_demo import DUBLIN_WARRANT, MLAT_ORDER
from tests.test_cli import run as borderline


def ok(cwd: Path, *args: str) -> str:
    done = borderline(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def error(cwd: Path, *args: str) -> str:
    done = borderline(*args, cwd=cwd)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_request_round_trip(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    for address, region in (("alice@example.test", "eu-dublin"), ("bob@example.test", "us-east")):
        ok(tmp_path, "account", "add", address, "--region", region, "--password", "long enough")

    explained = json.loads(ok(tmp_path, "law", "explain", str(DUBLIN_WARRANT), "--json"))
    outcomes = [(d["item"]["account"], d["outcome"]) for d in explained["decisions"]]
    assert outcomes.count(("alice@example.test", "refer")) == 2
    explained_text = ok(tmp_path, "law", "explain", str(DUBLIN_WARRANT))
    assert "Lawful route: Send a request under the US-Ireland Mutual Legal" in explained_text
    assert json.loads(ok(tmp_path, "request", "list", "--json")) == []  # a dry run records nothing

    bad = tmp_path / "bad.toml"
    bad.write_text(MLAT_ORDER.read_text().replace('issued_by = "judge"', 'issued_by = "mayor"'))
    assert "instrument.issued_by" in error(tmp_path, "law", "explain", str(bad))
    assert "instrument.issued_by" in error(tmp_path, "request", "submit", str(bad))

    order = tmp_path / "order.toml"
    shutil.copy(MLAT_ORDER, order)
    submitted = json.loads(ok(tmp_path, "request", "submit", str(order), "--json"))
    rid = str(submitted["id"])
    assert submitted["state"] == "decided"
    assert {i["outcome"] for i in submitted["items"]} == {"disclose"}
    assert "already recorded" in error(tmp_path, "request", "submit", str(order))

    assert "a second person must approve" in ok(tmp_path, "request", "approve", rid, "--by", "Ada")
    assert "already approved" in error(tmp_path, "request", "approve", rid, "--by", "ada")
    ok(tmp_path, "request", "approve", rid, "--by", "Ben")
    assert "is approved" in error(
        tmp_path, "request", "reject", rid, "--by", "Ben", "--reason", "x"
    )

    exported = json.loads(
        ok(tmp_path, "request", "export", rid, "--out", str(tmp_path / "out"), "--json")
    )
    assert [(e["region"], e["ok"]) for e in exported] == [("eu-dublin", True)]
    folder = exported[0]["folder"]
    assert json.loads(ok(tmp_path, "request", "verify", folder, "--json"))["ok"] is True
    (Path(folder) / "alice@example.test" / "subscriber.json").write_text("{}")
    assert "SHA-256 differs" in error(tmp_path, "request", "verify", folder)

    ok(tmp_path, "request", "close", rid, "--by", "Ben")
    shown = json.loads(ok(tmp_path, "request", "show", rid, "--json"))
    assert shown["state"] == "closed" and shown["approvers"] == ["Ada", "Ben"]
    notices = json.loads(ok(tmp_path, "request", "notifications", "--json"))
    assert [n["account"] for n in notices] == ["alice@example.test"]
    listed = json.loads(ok(tmp_path, "request", "list", "--json"))
    assert [(r["id"], r["state"]) for r in listed] == [(int(rid), "closed")]
    assert "no request 42" in error(tmp_path, "request", "show", "42")


def test_preservation_and_hold_list(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(
        tmp_path,
        "account",
        "add",
        "bob@example.test",
        "--region",
        "us-east",
        "--password",
        "pw123456",
    )
    preserve = tmp_path / "preserve.toml"
    preserve.write_text(
        DUBLIN_WARRANT.read_text()
        .replace('type = "us_sca_warrant"', 'type = "us_2703f_preservation"')
        .replace('issued_by = "judge"', 'issued_by = "prosecutor"')
        .replace(
            'accounts = ["alice@example.test", "bob@example.test"]',
            'accounts = ["bob@example.test"]',
        )
    )
    rid = str(json.loads(ok(tmp_path, "request", "submit", str(preserve), "--json"))["id"])
    holds = json.loads(ok(tmp_path, "hold", "list", "--json"))
    assert [(h["region"], h["account"]) for h in holds] == [("us-east", "bob@example.test")]
    assert holds[0]["until"].startswith("2027-02-14")  # served 2026-11-16 + 90 days
    assert "fulfilled" in ok(tmp_path, "request", "approve", rid, "--by", "Ada")
    hold = str(holds[0]["id"])
    assert "beyond the legal maximum" in error(
        tmp_path, "hold", "extend", hold, "--by", "Ada", "--until", "2027-06-01"
    )
    extended = json.loads(ok(tmp_path, "hold", "extend", hold, "--by", "Ada", "--json"))
    assert extended["until"].startswith("2027-05-15")  # 90 + 90 days (2703(f)(2))
    assert json.loads(ok(tmp_path, "hold", "list", "--json"))[0]["until"].startswith("2027-05-15")
    assert "already extended" in error(tmp_path, "hold", "extend", hold, "--by", "Ben")


def test_untrusted_text_is_printed_not_interpreted(tmp_path: Path) -> None:
    """An authority writes the reference and staff write reasons: rich markup in them
    (a stray closing tag crashed every later listing; a link tag was rendered) prints as is."""
    ok(tmp_path, "init")
    ok(
        tmp_path,
        "account",
        "add",
        "alice@example.test",
        "--region",
        "eu-dublin",
        "--password",
        "long enough",
    )
    order = tmp_path / "order.toml"
    order.write_text(
        MLAT_ORDER.read_text().replace('reference = "', 'reference = "[/] [bold]x[/bold] ', 1)
    )
    rid = str(json.loads(ok(tmp_path, "request", "submit", str(order), "--json"))["id"])
    link = "[link=https://evil.example]click[/link]"
    ok(tmp_path, "request", "reject", rid, "--by", "[/bold]", "--reason", link)
    listed = ok(tmp_path, "request", "list")
    assert "[/] [bold]x[/bold]" in listed
    shown = ok(tmp_path, "request", "show", rid)
    assert "[/] [bold]x[/bold]" in shown and link in shown
