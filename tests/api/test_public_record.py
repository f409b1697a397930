"""DESIGN.md invariant 8: what the log API serves names no one.

Mail flows across the boundary, both account holders read over IMAP, a legal request is
approved and exported (one under a nondisclosure order, revealed when it lapses), a witness
cosigns; then every byte the log API serves is scanned for the test cloud's addresses, its
client IP, the reviewers' names and the unsalted hashes of the addresses: zero hits.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import smtplib
import threading
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx

from borderline.cloud import Cloud
from borderline.legal import LegalDesk
from borderline.report import LogSnapshot
from borderline.staff import StaffRoster
from borderline.tlog import format_add_checkpoint, verify_checkpoint
from borderline.tlog.tiles import covered_paths
from borderline.tlog.witnesskey import create_witness_key
from borderline.vault.access import account_hash
from tests.conftest import PASSWORD, RunningCloud
from tests.legal.conftest import deliver, enroll_staff, request

ALICE, BOB = "alice@example.test", "bob@example.test"
STAFF_NAMES = ("Ada Reviewer", "Ben Counsel")  # enroll_staff's reviewers at the Irish custodian


def personal_data() -> list[bytes]:
    needles = [b"127.0.0.1", *(n.encode() for n in STAFF_NAMES)]
    for address in (ALICE, BOB):
        needles += [address.encode(), address.upper().encode()]
        needles += [
            account_hash(address).encode(),
            hashlib.sha256(address.encode()).hexdigest().encode(),
        ]
    return needles


def send(running: RunningCloud, via: str, to: str, subject: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "press@example.org", to, subject
    message.set_content("hello\n")
    listen = running.cloud.config.region(via).smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.send_message(message)


def read_inbox(running: RunningCloud, address: str) -> int:
    home = running.cloud.home_region(address)
    assert home is not None and home.section.imap is not None
    with imaplib.IMAP4(home.section.imap.host, home.section.imap.port, timeout=30) as client:
        client.login(address, PASSWORD)
        client.select("INBOX", readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[])")
        client.logout()
    return sum(1 for part in data if isinstance(part, tuple))


def test_the_log_api_serves_no_personal_data(cloud: Cloud, tmp_path: Path) -> None:
    create_witness_key(cloud.region("us-east").witness_dir, "witness.example.test/w")
    running = RunningCloud(cloud)
    try:
        scan_everything_served(running, tmp_path)
    finally:
        running.stop()


def scan_everything_served(running: RunningCloud, tmp_path: Path) -> None:
    cloud = running.cloud
    send(running, "us-east", ALICE, "across the boundary")
    send(running, "eu-dublin", BOB, "the other way")
    assert running.drained()
    assert read_inbox(running, ALICE) == 1 and read_inbox(running, BOB) == 1
    deliver(cloud, ALICE, "in the scope of the requests", "2026-05-01T10:00:00")
    until = date.today() + timedelta(days=30)
    with LegalDesk(cloud) as desk, contextlib.closing(StaffRoster.of(cloud.config)) as roster:
        staff = enroll_staff(roster)
        assert {s.member.name for s in staff.of("ie-custodian")} == set(STAFF_NAMES)
        for n, extra in enumerate(({}, {"nondisclosure": {"until": until.isoformat()}})):
            record = desk.submit(request(reference=f"T-{n}", **extra), staff.ada)
            for reviewer in staff.of("ie-custodian"):
                desk.approve(record.id, reviewer)
            desk.export(record.id, tmp_path / f"out-{record.id}", staff.ada)
    dublin = cloud.region("eu-dublin")
    assert dublin.vault.reveal_lapsed(until), "the nondisclosure order lapses: revealed"
    # The private records hold what the public entries must not: the scan can find it.
    records = b"".join(r.record for r in dublin.vault.access_records(ALICE, until))
    assert b"127.0.0.1" in records

    api = f"http://{cloud.config.api.listen}"
    log = dublin.transparency_log
    with httpx.Client(base_url=api, timeout=30) as client:
        served: dict[str, bytes] = {}
        for _ in range(400):  # the publisher signs a checkpoint covering everything
            note = client.get("/log/eu-dublin/checkpoint").content
            if verify_checkpoint(note, log.verifier_key()).size == log.size:
                break
            threading.Event().wait(0.05)
        for path in ("/log", "/openapi.json", "/log/eu-dublin", "/log/us-east"):
            served[path] = client.get(path).content
        for region in ("eu-dublin", "us-east"):
            prefix = f"/log/{region}"
            note = client.get(f"{prefix}/checkpoint").content
            served[f"{prefix}/checkpoint"] = note
            size = int(note.split(b"\n")[1])
            assert size > 0
            for path in covered_paths(size):
                got = client.get(f"{prefix}/{path}", headers={"Accept-Encoding": "identity"})
                assert got.status_code == 200, path
                served[f"{prefix}/{path}"] = got.content
        witness = LogSnapshot.load(log.directory, log.verifier_key())
        body = format_add_checkpoint(0, [], witness.note)
        cosigned = client.post("/log/us-east/add-checkpoint", content=body)
        assert cosigned.status_code == 200
        served["add-checkpoint"] = cosigned.content
        digest = hashlib.sha256(dublin.origin.encode()).hexdigest()
        served["monitoring"] = client.get(f"/log/us-east/{digest}/checkpoint").content
    entries = b"".join(v for k, v in served.items() if "/tile/entries/" in k)
    assert b"THIRD_PARTY_DATA_REQUEST" in entries and b'"reveal"' in entries
    hits = [
        (path, needle)
        for path, data in served.items()
        for needle in personal_data()
        if needle in data
    ]
    assert hits == []
