"""`borderline log ...` and `borderline access-history` as a user runs them, in a temp dir."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

from borderline.cloud import Cloud
from borderline.config import load_config
from borderline.report import LogSnapshot, region_verifier_key
from borderline.tlog import Checkpoint, sign_note, verify_receipt
from borderline.tlog.tiles import tile_path
from borderline.vault import Justification
from tests.report.conftest import ALICE, BOB, PASSWORD, fails, ok
from tests.test_cli import run

PW = ("--password", PASSWORD)


def release(root: Path, address: str, *, sealed_until: date | None = None) -> None:
    """Produce log events the way the servers do: a key release through the vault."""
    with Cloud(load_config(root / "borderline.toml")) as cloud:
        region = cloud.home_region(address)
        assert region is not None
        region.vault.release(
            address,
            Justification.THIRD_PARTY_DATA_REQUEST
            if sealed_until
            else Justification.CUSTOMER_INITIATED_ACCESS,
            "legal:team" if sealed_until else "imap:session",
            decision_id="D-1" if sealed_until else None,
            request_id="R-1" if sealed_until else None,
            sealed_until=sealed_until,
        )


def reveal(root: Path, region_id: str) -> list[int]:
    with Cloud(load_config(root / "borderline.toml")) as cloud:
        return cloud.region(region_id).vault.reveal_lapsed(date.today())


def test_log_round_trip(root: Path) -> None:
    release(root, ALICE)  # 0
    release(root, ALICE, sealed_until=date.today() - timedelta(days=1))  # 1, revealed at 4
    release(root, ALICE, sealed_until=date.today() + timedelta(days=90))  # 2
    release(root, BOB)  # 3
    assert reveal(root, "eu-dublin") == [4]

    saved = ok("log", "checkpoint", "--region", "eu-dublin", cwd=root)
    (root / "saved").write_text(saved)
    assert saved.startswith("example.test/eu-dublin\n5\n")
    listed = json.loads(ok("log", "checkpoint", "--json", cwd=root))
    assert {r["region"]: r["size"] for r in listed} == {"eu-dublin": 5, "us-east": 0}

    release(root, ALICE)  # 5
    verified = ok("log", "verify", "--region", "eu-dublin", "--since", "saved", cwd=root)
    assert "size 6" in verified and "extends the saved checkpoint of size 5" in verified

    history = json.loads(ok("access-history", ALICE, *PW, "--json", cwd=root))
    assert [(e["index"], e["revealed_from"]) for e in history["events"]] == [
        (0, None),
        (4, 1),
        (5, None),
    ]
    lawful = history["events"][1]
    assert lawful["justification"] == "THIRD_PARTY_DATA_REQUEST" and lawful["request"] == "R-1"
    assert lawful["private"]["decision"] == "D-1"
    assert lawful["private"]["principal"] == "legal:team"
    assert history["events"][0]["private"]["principal"] == "imap:session"
    assert history["pending"] == [], "the still-sealed access stays hidden from its holder too"
    assert history["sealed_in_log"] == 2 and history["still_sealed_in_log"] == 1
    with Cloud(load_config(root / "borderline.toml")) as cloud:
        vkey = region_verifier_key(
            "example.test/eu-dublin", cloud.directory.region_keys("eu-dublin").signing_key
        )
    view = LogSnapshot.load(root / "data/eu-dublin/log", vkey)
    for event in history["events"]:
        got = verify_receipt(event["receipt"].encode(), vkey, view.entries[event["index"]])
        assert got.checkpoint.size == 6
    human = ok("access-history", ALICE, *PW, cwd=root)
    assert "revealed (sealed at #1)" in human and "still sealed: 1" in human

    receipt = ok("log", "prove", "--region", "eu-dublin", "--index", "3", cwd=root)
    assert receipt.startswith("c2sp.org/tlog-proof@v1\nindex 3\n")
    verify_receipt(receipt.encode(), vkey, view.entries[3])
    older = ok(
        "log",
        "prove",
        "--region",
        "eu-dublin",
        "--index",
        "3",
        "--size",
        "5",
        "--checkpoint",
        "saved",
        cwd=root,
    )
    assert verify_receipt(older.encode(), vkey, view.entries[3]).checkpoint.size == 5
    assert "no signed checkpoint of size 4" in fails(
        "log", "prove", "--region", "eu-dublin", "--index", "1", "--size", "4", cwd=root
    )
    assert "not under the checkpoint" in fails(
        "log", "prove", "--region", "eu-dublin", "--index", "9", cwd=root
    )

    # A copy of the log verifies on its own; the same copy with one byte changed does not.
    shutil.copytree(
        root / "data/eu-dublin/log", root / "copy", ignore=shutil.ignore_patterns("journal", "lock")
    )
    ok("log", "verify", "--region", "eu-dublin", "--dir", "copy", cwd=root)
    bundle = root / "copy" / tile_path("entries", 0, 6)
    bundle.write_bytes(bundle.read_bytes().replace(b"INITIATED", b"INITIATEd", 1))
    assert "does not match" in fails(
        "log", "verify", "--region", "eu-dublin", "--dir", "copy", cwd=root
    )


def test_tampered_log_fails_verification(root: Path) -> None:
    release(root, ALICE)
    release(root, BOB)
    saved = ok("log", "checkpoint", "--region", "eu-dublin", cwd=root)
    (root / "saved").write_text(saved)
    tile = root / "data/eu-dublin/log" / tile_path(0, 0, 2)
    data = bytearray(tile.read_bytes())
    data[5] ^= 1
    tile.write_bytes(bytes(data))
    assert "does not match" in fails("log", "verify", "--region", "eu-dublin", cwd=root)
    assert "does not match" in fails("access-history", ALICE, *PW, cwd=root)

    tile.write_bytes(bytes(data[:5]) + bytes([data[5] ^ 1]) + bytes(data[6:]))
    ok("log", "verify", "--region", "eu-dublin", "--since", "saved", cwd=root)

    # A checkpoint the region signed for another history (a fork) is caught by --since.
    with Cloud(load_config(root / "borderline.toml")) as cloud:
        region = cloud.region("eu-dublin")
        fork = Checkpoint(region.origin, 1, bytes(32)).text()
        (root / "fork").write_bytes(sign_note(fork, region.origin, region.vault.signing_key))
    reason = fails("log", "verify", "--region", "eu-dublin", "--since", "fork", cwd=root)
    assert "consistency" in reason or "root" in reason


def test_verify_checks_every_region_by_default(root: Path) -> None:
    release(root, ALICE)
    release(root, BOB)
    lines = ok("log", "verify", cwd=root).splitlines()
    assert [line.split()[1] for line in lines] == ["example.test/us-east", "example.test/eu-dublin"]
    assert all(line.startswith("ok: ") for line in lines)
    verified = json.loads(ok("log", "verify", "--json", cwd=root))
    assert [(r["region"], r["ok"]) for r in verified] == [("us-east", True), ("eu-dublin", True)]

    tile = root / "data/eu-dublin/log" / tile_path(0, 0, 2)
    data = bytearray(tile.read_bytes())
    data[5] ^= 1
    tile.write_bytes(bytes(data))
    done = run("log", "verify", cwd=root)
    assert done.returncode == 1, "one region's broken log fails the whole check"
    assert done.stdout.startswith("ok: example.test/us-east "), "the others are still checked"
    assert done.stderr.startswith("error: eu-dublin: ") and "does not match" in done.stderr
    assert "--region" in fails("log", "verify", "--since", "saved", cwd=root)


def test_unknown_account_wrong_password_and_region(root: Path) -> None:
    release(root, ALICE)
    assert "no account nobody@example.test" in fails(
        "access-history", "nobody@example.test", *PW, cwd=root
    )
    refused = fails("access-history", ALICE, "--password", "not the password", cwd=root)
    assert "password is wrong" in refused and "imap:session" not in refused
    assert "mars" in fails("log", "verify", "--region", "mars", cwd=root)


def test_serve_refuses_a_log_smaller_than_what_it_signed(root: Path) -> None:
    """Issue 9, case 3, through the command an operator runs: the checkpoint deleted and the
    journal cut at a record boundary; the copy kept outside the log directory catches it."""
    release(root, ALICE)
    release(root, ALICE)
    ok("log", "checkpoint", "--region", "eu-dublin", cwd=root)
    log = root / "data/eu-dublin/log"
    for name in ("checkpoint", "checkpoint.signed"):
        (log / name).unlink()
    data = (log / "journal").read_bytes()
    (log / "journal").write_bytes(data[: 20 + int.from_bytes(data[16:20], "big") + 32])
    reason = fails("serve", cwd=root)
    assert "not starting" in reason and "size 2" in reason and "only 1 entries" in reason
    assert "size 2" in fails("log", "verify", "--region", "eu-dublin", cwd=root)
