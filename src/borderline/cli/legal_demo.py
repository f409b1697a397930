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
from borderline.legal import LegalDesk, LegalError, RequestRecord, verify_package

DUBLIN_WARRANT = EXAMPLES / "dublin_warrant_today.toml"
MLAT_ORDER = EXAMPLES / "irish_court_order_mlat.toml"
# The accounts the example request files name, and where the example config homes them.
CASE_ACCOUNTS = (("alice@example.test", "eu-dublin"), ("bob@example.test", "us-east"))
REVIEWERS = ("Dana Okafor (legal)", "Eli Brandt (security)")


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


def _replay(cloud: Cloud, desk: LegalDesk, path: Path, out: Path) -> list[str]:
    record = desk.submit(load_request(path), actor="demo intake")
    ins = record.request.instrument
    lines = [
        f"request {record.id} {record.reference}: {ins.type} served on {ins.served_on}"
        f" (law of {record.request.law_date})",
        *_decisions(record),
    ]
    if not any(i.outcome == "disclose" for i in record.items):
        refused = desk.reject(record.id, REVIEWERS[0], "no item may lawfully be disclosed")
        return [*lines, f"  -> {refused.state}: {refused.reject_reason}"]
    desk.approve(record.id, REVIEWERS[0])
    try:
        desk.approve(record.id, REVIEWERS[0].upper())
    except LegalError as exc:
        lines.append(f"  two-person rule: {exc}")
    approved = desk.approve(record.id, REVIEWERS[1])
    lines.append(f"  {approved.state} by {' and '.join(approved.approvers)}")
    for region_id, folder in desk.export(record.id, out).items():
        trusted = [cloud.directory.region_keys(region_id).signing_key]
        check = verify_package(folder, trusted)
        verdict = "verified" if check.ok else "FAILED: " + "; ".join(check.problems)
        lines.append(f"  package {folder}: {check.files_checked} files, signature {verdict}")
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
    closed = desk.close(record.id, REVIEWERS[1])
    notices = [n for n in desk.records.notifications() if n.request_id == record.id]
    lines.append(f"  {closed.state}; user notices queued: {len(notices)}")
    return lines


def demo_replay(cloud: Cloud, out: Path | None = None) -> list[str]:
    """Submit the two example requests, decide, approve with two people, export signed
    packages of what may be disclosed (to `out`, or a new temp dir) and verify them.
    Returns the lines to print."""
    out = out or Path(tempfile.mkdtemp(prefix="borderline-disclosures-"))
    _seed(cloud)
    with LegalDesk(cloud) as desk:
        lines = ["Dublin warrant, served today on the US custodian:"]
        lines += _replay(cloud, desk, DUBLIN_WARRANT, out)
        lines.append("The MLAT route: an Irish court order served on the Irish custodian:")
        lines += _replay(cloud, desk, MLAT_ORDER, out)
        due = desk.due_notifications(datetime.now(UTC).date())
        lines.append(f"user notices due today: {', '.join(n.account for n in due) or 'none'}")
    return lines
