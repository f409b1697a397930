"""The demo's legal part: replay the Dublin warrant (as served today) and the MLAT-route Irish
order end to end on a running cloud. Demo scaffolding (it seeds accounts and mail), so it
lives with the command line, not in the legal core."""

from __future__ import annotations

import json
import secrets
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from borderline.cloud import Cloud
from borderline.law import EXAMPLES, load_request
from borderline.legal import LegalDesk, LegalError, RequestRecord
from borderline.legal.office import trusted_verification
from borderline.staff import Signer, StaffError, StaffRoster, parse_roles, totp_code

DUBLIN_WARRANT = EXAMPLES / "dublin_warrant_today.toml"
MLAT_ORDER = EXAMPLES / "irish_court_order_mlat.toml"
# The accounts the example request files name, and where the example config homes them.
CASE_ACCOUNTS = (("alice@example.test", "eu-dublin"), ("bob@example.test", "us-east"))
# Each custodian's own people answer the requests served on it: a legal reviewer (who also
# does intake) and a security reviewer at each.
STAFF = (
    ("Dana Okafor", "intake,legal-reviewer", "us-east"),
    ("Eli Brandt", "security-reviewer", "us-east"),
    ("Fionnuala Byrne", "intake,legal-reviewer", "eu-dublin"),
    ("Gus Keane", "security-reviewer", "eu-dublin"),
)
LOOK_ALIKE = "D\u0430na Okafor"  # with a Cyrillic a


def _enroll(roster: StaffRoster) -> tuple[dict[str, tuple[Signer, Signer]], list[str]]:
    """The demo's staff, each logged in with password and TOTP code as a person would."""
    people: dict[str, list[Signer]] = {}
    lines = []
    for name, roles, region in STAFF:
        password = secrets.token_urlsafe(16)
        enrolled = roster.add(name, parse_roles(roles), region, password)
        signer = roster.login(str(enrolled.member.id), password, totp_code(enrolled.totp_secret))
        people.setdefault(signer.member.custodian, []).append(signer)
        lines.append(
            f"  staff {signer.id}: {name} ({signer.member.role_words()}) at"
            f" {signer.member.custodian}, key held by {region}; logged in with password and code"
        )
    try:
        roster.add(LOOK_ALIKE, parse_roles("legal-reviewer"), "us-east", secrets.token_urlsafe(16))
    except StaffError as exc:
        lines.append(f"  a second account for a look-alike name is refused: {exc}")
    return {c: (legal, security) for c, (legal, security) in people.items()}, lines


def _seed(cloud: Cloud) -> None:
    """Make sure the case accounts exist and hold mail dated inside (2026-06-01) and outside
    (2025-06-01) the requests' scope, so the package shows the date filter at work."""
    for address, region_id in CASE_ACCOUNTS:
        if cloud.directory.home(address) is None:
            cloud.add_account(address, region_id, secrets.token_urlsafe(16))
        region = cloud.home_region(address)
        if region is None:
            continue
        for day in ("2026-06-01", "2025-06-01"):
            message = EmailMessage()
            message["From"] = "carol@example.test"
            message["To"] = address
            message["Subject"] = f"case file {day}"
            message["Date"] = f"{day}T10:00:00+00:00"
            message.set_content(f"Shipment notes for {address}, {day}.\n")
            received = datetime.fromisoformat(f"{day}T10:00:00+00:00").timestamp()
            region.store.deliver(
                [region.planner.local_delivery(address, message.as_bytes(), received)]
            )


def _decisions(record: RequestRecord) -> list[str]:
    lines = []
    for item in record.items:
        d = item.decision
        where = f" [{d.location.region}, keys: {d.location.custodian}]" if d.location else ""
        detail = f" ({d.ground})" if d.outcome == "reject" else ""
        detail += f" -> {d.route}" if d.route else ""
        lines.append(f"    {item.account} / {item.category}: {d.outcome.upper()}{where}{detail}")
    return lines


def _replay(
    cloud: Cloud,
    desk: LegalDesk,
    people: dict[str, tuple[Signer, Signer]],
    path: Path,
    out: Path,
    roster: StaffRoster,
) -> list[str]:
    request = load_request(path)
    legal, security = people[request.instrument.served_on]
    record = desk.submit(request, legal)
    ins = record.request.instrument
    lines = [
        f"request {record.id} {record.reference}: {ins.type} served on {ins.served_on}"
        f" (law of {record.request.law_date})",
        *_decisions(record),
    ]
    if not any(i.outcome == "disclose" for i in record.items):
        refused = desk.reject(record.id, legal, "no item may lawfully be disclosed")
        return [*lines, f"  -> {refused.state}: {refused.reject_reason}"]
    desk.approve(record.id, legal)
    try:
        desk.approve(record.id, legal)
    except LegalError as exc:
        lines.append(f"  two-person rule: {exc}")
    approved = desk.approve(record.id, security)
    lines.append(f"  {approved.state} by {' and '.join(approved.approvers)}, each signed")
    for region_id, folder in desk.export(record.id, out, security).items():
        check = trusted_verification(folder, desk, roster)
        verdict = "verified" if check.ok else "FAILED: " + "; ".join(check.problems)
        lines.append(
            f"  package {folder}: {check.files_checked} files, signature {verdict}"
            " (the region's published key and both approvers' signatures)"
        )
        log = cloud.region(region_id).transparency_log
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for item in manifest["items"]:
            if item["key_release"]:
                index = item["key_release"]["log_index"]
                event = json.loads(log.entry(index))
                lines.append(
                    f"  key release on {log.origin} log entry {index}: "
                    f"{event['justification']}, request {event['request']},"
                    f" {item['messages']} message(s) in scope"
                )
    closed = desk.close(record.id, legal)
    notices = [n for n in desk.records.notifications() if n.request_id == record.id]
    lines.append(f"  {closed.state}; user notices queued: {len(notices)}")
    return lines


def _staff_actions(cloud: Cloud) -> list[str]:
    """One staff action as the public log shows it: no name, only a commitment."""
    log = cloud.region("eu-dublin").transparency_log
    for index in reversed(range(log.size)):
        entry = json.loads(log.entry(index))
        if entry.get("type") == "staff-action":
            return [
                f"  a staff action on {log.origin} log entry {index}: {log.entry(index).decode()}"
            ]
    return []


def demo_replay(cloud: Cloud, out: Path | None = None) -> list[str]:
    """Create two staff accounts at each custodian, submit the two example requests, decide,
    approve with two people (legal and security reviewer), export signed packages of what may
    be disclosed (to `out`, or a new temp dir) and verify them. Returns the lines to print."""
    out = out or Path(tempfile.mkdtemp(prefix="borderline-disclosures-"))
    _seed(cloud)
    roster = StaffRoster.of(cloud.config)
    try:
        people, enrolled = _enroll(roster)
        lines = ["The legal desk's staff, two reviewers at each custodian:", *enrolled]
        with LegalDesk(cloud) as desk:
            lines.append("Dublin warrant, served today on the US custodian:")
            lines += _replay(cloud, desk, people, DUBLIN_WARRANT, out, roster)
            lines.append("The MLAT route: an Irish court order served on the Irish custodian:")
            lines += _replay(cloud, desk, people, MLAT_ORDER, out, roster)
            lines += _staff_actions(cloud)
            due = desk.due_notifications(datetime.now(UTC).date())
    finally:
        roster.close()
    lines.append(f"user notices due today: {', '.join(n.account for n in due) or 'none'}")
    return lines
