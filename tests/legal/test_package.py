"""Disclosure packages: contents, scope dates, hashes and signature, tamper detection, and the
key release on the region's transparency log."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import stat
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.cloud import Cloud
from borderline.legal import LegalDesk, LegalError, PackageWriter, verify_package
from borderline.tlog import TransparencyLog

from .conftest import ALICE, BOB, Staff, deliver, request


def _approved(desk: LegalDesk, staff: Staff, **kwargs: Any) -> int:
    wanted = request(**kwargs)
    legal, security = staff.of(wanted.instrument.served_on)
    record = desk.submit(wanted, legal)
    desk.approve(record.id, legal)
    desk.approve(record.id, security)
    return record.id


def _kinds(log: TransparencyLog) -> list[str]:
    return [json.loads(log.entry(i))["type"] for i in range(log.size)]


@pytest.fixture
def mail(cloud: Cloud) -> list[bytes]:
    """Two messages inside the scope (2026-01-01 .. 2026-11-16 inclusive), one before it."""
    return [
        deliver(cloud, ALICE, "inside 1", "2026-06-01T10:00:00"),
        deliver(cloud, ALICE, "outside", "2025-12-31T23:00:00"),
        deliver(cloud, ALICE, "inside 2", "2026-11-16T23:30:00"),
    ]


def test_package_contents_and_logged_release(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    request_id = _approved(desk, staff)
    log = cloud.region("eu-dublin").transparency_log
    folders = desk.export(request_id, tmp_path / "out", staff.ada)
    assert desk.get(request_id).state == "fulfilled"
    assert list(folders) == ["eu-dublin"]
    folder = folders["eu-dublin"]
    manifest = json.loads((folder / "manifest.json").read_text())

    emls = sorted((folder / ALICE / "content").glob("*.eml"))
    assert [p.read_bytes() for p in emls] == [mail[0], mail[2]]
    box = mailbox.mbox(folder / ALICE / "content" / "messages.mbox")
    assert [m["Subject"] for m in box] == ["inside 1", "inside 2"]
    traffic = json.loads((folder / ALICE / "traffic.json").read_text())
    assert traffic["count"] == 2 and traffic["total_size"] == len(mail[0]) + len(mail[2])
    assert "Subject" not in json.dumps(traffic)  # non-content only
    subscriber = json.loads((folder / ALICE / "subscriber.json").read_text())
    assert subscriber["account"]["address"] == ALICE
    assert subscriber["account"]["home_region"] == "eu-dublin"
    assert manifest["custodian"]["id"] == "ie-custodian"
    assert manifest["approved_by"] == ["Ada Reviewer (staff 1)", "Ben Counsel (staff 2)"]
    assert [(a["staff_id"], a["role"]) for a in manifest["approvals"]] == [
        (1, "legal-reviewer"),
        (2, "security-reviewer"),
    ]

    # Exactly one key release: for the content item, logged before the key left the vault.
    releases = [i["key_release"] for i in manifest["items"] if i["key_release"]]
    assert [i["category"] for i in manifest["items"] if i["key_release"]] == ["content"]
    entry = json.loads(log.entry(releases[0]["log_index"]))
    content_item = next(i for i in desk.get(request_id).items if i.category == "content")
    assert entry["justification"] == "THIRD_PARTY_DATA_REQUEST"
    assert entry["request"] == f"req{request_id}"
    assert not {"account", "principal", "decision"} & set(entry), "the log names no one"
    # The decision and the reviewers are in the private record the commitment opens.
    records = cloud.region("eu-dublin").vault.access_records(ALICE, date.today())
    [record] = [r for r in records if r.commitment == entry["commitment"]]
    assert record.opens() and record.fields["decision"] == content_item.id
    assert record.fields["principal"] == "legal desk (two-person approval)"  # people: signed

    # Residency: no byte of the content outside Alice's region but the package itself.
    data_dir = cloud.config.cloud.data_dir
    outside = [p for p in data_dir.rglob("*") if p.is_file() and "eu-dublin" not in p.parts]
    assert data_dir / "legal.sqlite" in outside
    assert not [p for p in outside if b"body of inside 1" in p.read_bytes()]

    trusted = [cloud.directory.region_keys("eu-dublin").signing_key]
    result = verify_package(folder, trusted)
    assert result.ok, result.problems
    assert result.files_checked == len(manifest["files"]) == 5
    assert result.public_key == cloud.region("eu-dublin").vault.signing_public_key.hex()
    # The wrong region's key is not trusted.
    other = [cloud.directory.region_keys("us-east").signing_key]
    assert any(
        f"signed by key {result.public_key}, which is not" in p
        for p in verify_package(folder, other).problems
    )


def test_a_message_gone_between_listing_and_reading_is_counted_not_fatal(
    cloud: Cloud,
    desk: LegalDesk,
    staff: Staff,
    mail: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message the user expunges while the package is written (or what a lapsed hold
    retained, deleted by the server) made the export fail after its key release was
    logged; now the package holds the others and says how many went."""
    request_id = _approved(desk, staff)
    store = cloud.region("eu-dublin").store
    first = store.messages(store.mailbox(ALICE, "INBOX").id)[0].blob_id
    blobs = store.blobs
    monkeypatch.setattr(store, "blobs", lambda ids: {} if ids == [first] else blobs(ids))
    folder = desk.export(request_id, tmp_path / "out", staff.ada)["eu-dublin"]
    emls = sorted((folder / ALICE / "content").glob("*.eml"))
    assert [p.read_bytes() for p in emls] == [mail[2]]
    manifest = json.loads((folder / "manifest.json").read_text())
    [content] = [i for i in manifest["items"] if i["category"] == "content"]
    assert (content["messages"], content["vanished"]) == (1, 1)
    trusted = [cloud.directory.region_keys("eu-dublin").signing_key]
    assert verify_package(folder, trusted).ok


def _resign(folder: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    """What someone holding `key` could do: rewrite the manifest and sign it again."""
    public = key.public_key().public_bytes_raw().hex()
    body = json.dumps({**manifest, "public_key": public}, indent=2, sort_keys=True).encode()
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.sig").write_text(key.sign(body).hex())
    (folder / "manifest.pub").write_text(public)


def test_resigned_package_and_forged_approvals_fail(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    folder = desk.export(_approved(desk, staff), tmp_path, staff.ada)["eu-dublin"]
    trusted = [cloud.directory.region_keys("eu-dublin").signing_key]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert verify_package(folder, trusted).ok

    attacker = Ed25519PrivateKey.generate()
    _resign(folder, manifest, attacker)
    assert verify_package(folder).ok  # self-consistent: only the trusted key tells
    (problem,) = verify_package(folder, trusted, "eu-dublin's published key").problems
    assert problem.startswith(
        f"manifest.pub: signed by key {attacker.public_key().public_bytes_raw().hex()},"
        " which is not eu-dublin's published key"
    )

    # Even the region's own key cannot make one person's approval into two.
    region_key = cloud.region("eu-dublin").vault.signing_key
    _resign(folder, {**manifest, "approvals": manifest["approvals"][:1]}, region_key)
    assert any("two different people" in p for p in verify_package(folder, trusted).problems)
    forged = [{**a, "role": "security-reviewer"} for a in manifest["approvals"][:1]]
    _resign(folder, {**manifest, "approvals": manifest["approvals"][:1] + forged}, region_key)
    assert any("not an approval" in p for p in verify_package(folder, trusted).problems)
    statement = manifest["approvals"][1]["statement"].replace("req1-item3", "req1-item9")
    altered = [manifest["approvals"][0], {**manifest["approvals"][1], "statement": statement}]
    _resign(folder, {**manifest, "approvals": altered}, region_key)
    assert any("does not verify" in p for p in verify_package(folder, trusted).problems)
    _resign(folder, manifest, region_key)
    roster_keys = {2: [], 1: []}
    assert any(
        "is not a key of staff" in p
        for p in verify_package(folder, trusted, staff_keys=lambda i: roster_keys[i]).problems
    )


def test_tampering_is_detected(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    folder = desk.export(_approved(desk, staff), tmp_path, staff.ada)["eu-dublin"]
    eml = sorted((folder / ALICE / "content").glob("*.eml"))[0]
    original = eml.read_bytes()
    eml.write_bytes(original.replace(b"inside 1", b"inside X"))
    assert [p for p in verify_package(folder).problems if "SHA-256 differs" in p] == [
        f"{eml.relative_to(folder).as_posix()}: SHA-256 differs from the manifest"
    ]
    eml.write_bytes(original)
    assert verify_package(folder).ok

    (folder / ALICE / "planted.eml").write_bytes(b"From: nobody\n\nhi\n")
    assert any("not in the manifest" in p for p in verify_package(folder).problems)
    (folder / ALICE / "planted.eml").unlink()

    manifest = folder / "manifest.json"
    body = manifest.read_bytes()
    manifest.write_bytes(body.replace(b'"count"', b'"count" ') + b" ")
    assert any("signature does not match" in p for p in verify_package(folder).problems)
    manifest.write_bytes(body)
    eml.unlink()
    assert any("missing" in p for p in verify_package(folder).problems)


def test_non_content_disclosure_releases_no_key(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    log = cloud.region("eu-dublin").transparency_log
    request_id = _approved(desk, staff, categories=("subscriber", "traffic"))
    folder = desk.export(request_id, tmp_path, staff.ben)
    assert _kinds(log) == ["staff-action"] * 5  # submit, decide, approve twice, export
    assert verify_package(folder["eu-dublin"]).ok
    assert not list(folder["eu-dublin"].rglob("*.eml"))


def test_mixed_request_discloses_only_what_the_served_custodian_controls(
    cloud: Cloud, desk: LegalDesk, staff: Staff, tmp_path: Path
) -> None:
    deliver(cloud, ALICE, "dublin mail", "2026-06-01T10:00:00")
    bob_mail = deliver(cloud, BOB, "us mail", "2026-06-01T10:00:00")
    request_id = _approved(
        desk,
        staff,
        type="us_sca_warrant",
        country="US",
        served_on="us-custodian",
        accounts=(ALICE, BOB),
        categories=("subscriber", "content"),
    )
    dublin_log = cloud.region("eu-dublin").transparency_log.size
    folders = desk.export(request_id, tmp_path, staff.cy)
    assert list(folders) == ["us-east"]  # Alice's Dublin mail is referred, never read
    assert cloud.region("eu-dublin").transparency_log.size == dublin_log
    emls = list(folders["us-east"].rglob("*.eml"))
    assert [p.read_bytes() for p in emls] == [bob_mail]
    manifest = json.loads((folders["us-east"] / "manifest.json").read_text())
    assert {(i["account"], i["outcome"]) for i in manifest["not_disclosed"]} == {(ALICE, "refer")}
    assert manifest["custodian"]["id"] == "us-custodian"


def test_nondisclosure_order_seals_the_log_entry_and_defers_notice(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    today = date.today()
    until = today + timedelta(days=90)
    request_id = _approved(desk, staff, nondisclosure={"until": until.isoformat()})
    log = cloud.region("eu-dublin").transparency_log
    folder = desk.export(request_id, tmp_path, staff.ada)["eu-dublin"]
    manifest = json.loads((folder / "manifest.json").read_text())
    release = next(i["key_release"] for i in manifest["items"] if i["key_release"])
    assert release["sealed_until"] == until.isoformat()
    entry = json.loads(log.entry(release["log_index"]))
    # Only a salted commitment is public: no account, principal or decision until it lapses.
    assert entry["type"] == "sealed-access" and set(entry) == {"type", "v", "region", "commitment"}

    desk.close(request_id, staff.ada, today=today)
    assert desk.due_notifications(today) == []
    assert desk.due_notifications(until - timedelta(days=1)) == []
    due = desk.due_notifications(until)
    assert [(n.account, n.due) for n in due] == [(ALICE, until)]
    notice = desk.mark_notified(due[0].id, staff.ada)
    assert notice.sent_at is not None
    assert desk.get(request_id).history[-1].note == f"user notice {notice.id} to {ALICE} sent"
    with pytest.raises(LegalError, match="was sent"):
        desk.mark_notified(due[0].id, staff.ada)
    assert desk.due_notifications(until) == []


def test_notice_due_at_close_without_nondisclosure(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    request_id = _approved(desk, staff)
    desk.export(request_id, tmp_path, staff.ada)
    today = date(2026, 11, 28)
    desk.close(request_id, staff.ben, today=today)
    assert [(n.account, n.due) for n in desk.due_notifications(today)] == [(ALICE, today)]


def test_existing_target_refused_before_any_release(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    request_id = _approved(desk, staff)
    out = tmp_path / "out"
    (out / f"request-{request_id}-T-1-eu-dublin").mkdir(parents=True)
    log = cloud.region("eu-dublin").transparency_log
    before = log.size
    with pytest.raises(FileExistsError):
        desk.export(request_id, out, staff.ada)
    assert log.size == before
    assert desk.get(request_id).state == "approved"
    assert [p.name for p in out.iterdir()] == [f"request-{request_id}-T-1-eu-dublin"]


EPOC: dict[str, Any] = {
    "type": "eu_epoc",
    "country": "FR",
    "categories": ("content",),
    "instrument": {
        "type": "eu_epoc",
        "issued_by": "judge",
        "served_on": "ie-custodian",
        "max_penalty_years": 5,
    },
}


def test_eevidence_transfer_waits_for_the_enforcing_state(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    request_id = _approved(desk, staff, **EPOC)
    obligation = desk.get(request_id).items[0].decision.obligations[0]
    assert obligation.policy_id == "eu.eevidence.art8_notification" and obligation.due
    log = cloud.region("eu-dublin").transparency_log
    before = log.size
    served = datetime(2026, 11, 20, tzinfo=UTC)
    with pytest.raises(LegalError, match="enforcing state may refuse"):
        desk.export(request_id, tmp_path / "early", staff.ada, now=served + timedelta(days=3))
    assert log.size == before and desk.get(request_id).state == "approved"
    desk.export(
        request_id, tmp_path / "confirmed", staff.ada, served, enforcing_state_confirmed=True
    )
    assert "enforcing state confirmed" in desk.get(request_id).history[-1].note
    assert _kinds(log)[before:] == ["access", "staff-action"]

    later = _approved(desk, staff, **{**EPOC, "reference": "T-2"})
    assert desk.export(
        later, tmp_path / "later", staff.ada, now=obligation.due + timedelta(seconds=1)
    )


def test_emergency_epoc_is_not_held_back_by_the_notification(
    cloud: Cloud, desk: LegalDesk, staff: Staff, mail: list[bytes], tmp_path: Path
) -> None:
    """Art. 10(4): an emergency EPOC is answered within 8 hours; the enforcing state objects
    within 96 hours afterwards, so the transfer does not wait (it used to wait 10 days)."""
    danger = "an attack on a hospital is planned for tonight"
    request_id = _approved(desk, staff, **EPOC, emergency=True, danger=danger)
    (obligation,) = desk.get(request_id).items[0].decision.obligations
    assert obligation.policy_id == "eu.eevidence.art8_emergency" and not obligation.holds_transfer
    served = datetime(2026, 11, 20, tzinfo=UTC)
    folders = desk.export(request_id, tmp_path / "out", staff.ada, served + timedelta(hours=1))
    manifest = json.loads((folders["eu-dublin"] / "manifest.json").read_text())
    assert manifest["request"]["emergency"]["danger"] == danger
    assert manifest["request"]["emergency"]["voluntary"] is False


def test_us_emergency_disclosure_is_recorded_as_one(
    cloud: Cloud, desk: LegalDesk, staff: Staff, tmp_path: Path
) -> None:
    """2702(b)(8) is voluntary: the record says who decided, on what danger, and when."""
    deliver(cloud, BOB, "ransom note", "2026-06-01T10:00:00")
    danger = "a named child is held and threatened with death"
    record = desk.submit(
        request(
            "us_emergency_request",
            country="US",
            served_on="us-custodian",
            issued_by="police",
            accounts=(BOB,),
            categories=("content",),
            received="2026-11-20T03:00:00Z",
            emergency=True,
            danger=danger,
        ),
        staff.cy,
    )
    (item,) = record.items
    assert item.decision.voluntary and "disclose.compelled" not in item.decision.policy_ids
    assert record.emergency() == {
        "danger": danger,
        "voluntary": True,
        "decided_by": [],
        "decided_at": None,
    }
    desk.approve(record.id, staff.cy)
    approved = desk.approve(record.id, staff.dee)
    emergency = approved.emergency()
    assert emergency is not None and emergency["decided_by"] == [
        "Cy Attorney (staff 3)",
        "Dee Guard (staff 4)",
    ]
    decided = next(h for h in approved.history if h.state == "approved")
    assert emergency["decided_at"] == decided.at.isoformat()
    assert f"voluntary emergency disclosure decided on the danger stated: {danger}" in decided.note
    assert approved.to_json()["emergency"] == emergency
    folders = desk.export(record.id, tmp_path / "out", staff.dee)
    manifest = json.loads((folders["us-east"] / "manifest.json").read_text())
    assert manifest["request"]["emergency"] == emergency


def test_messages_after_service_are_not_produced(
    cloud: Cloud, desk: LegalDesk, staff: Staff, tmp_path: Path
) -> None:
    """A stored-data order served on 2026-11-20 for a period to 2026-12-31 reaches only the
    mail that existed when it was served."""
    before = deliver(cloud, ALICE, "before service", "2026-11-19T10:00:00")
    deliver(cloud, ALICE, "after service", "2026-11-25T10:00:00")
    request_id = _approved(desk, staff, categories=("content",), scope_to="2026-12-31")
    (obligation,) = desk.get(request_id).items[0].decision.obligations
    assert obligation.policy_id == "scope.cut_at_service"
    folders = desk.export(request_id, tmp_path / "out", staff.ada)
    emls = sorted((folders["eu-dublin"] / ALICE / "content").glob("*.eml"))
    assert [p.read_bytes() for p in emls] == [before]


def test_package_is_private_while_it_is_written(tmp_path: Path) -> None:
    """A staging folder a killed export leaves behind holds plaintext: only its owner may
    read it, whatever the umask."""
    previous = os.umask(0)
    try:
        writer = PackageWriter(tmp_path / "out" / "request-1")
        writer.write(f"{ALICE}/content/1.eml", b"plaintext")
        box = mailbox.mbox(writer.path(f"{ALICE}/content/messages.mbox"))
        box.add(b"Subject: x\n\nplaintext\n")
        box.close()
    finally:
        os.umask(previous)
    staging = writer.staging
    folders = [staging, *(p for p in staging.rglob("*") if p.is_dir())]
    files = [p for p in staging.rglob("*") if p.is_file()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o700}
    assert len(files) == 2 and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    writer.abandon()
    assert not staging.exists()


def test_terminated_export_removes_its_staging_folder(tmp_path: Path) -> None:
    """SIGTERM (a stopped job, a service manager) runs the export's cleanup."""
    script = f"""
import os, signal
from pathlib import Path
from borderline.cli.app import exit_on_terminate
from borderline.legal import PackageWriter
exit_on_terminate()
writer = PackageWriter(Path({str(tmp_path / "request-1")!r}))
try:
    writer.write("a.eml", b"plaintext")
    os.kill(os.getpid(), signal.SIGTERM)
finally:
    writer.abandon()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(tmp_path.iterdir()) == []
