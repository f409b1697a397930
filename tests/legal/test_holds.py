"""Preservation: a preservation request places a hold that keeps expunged mail retained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from borderline.cloud import Cloud
from borderline.legal import LegalDesk

from .conftest import BOB, REVIEWERS, deliver, request

PRESERVE: dict[str, Any] = {
    "type": "us_2703f_preservation",
    "country": "US",
    "served_on": "us-custodian",
    "issued_by": "prosecutor",
    "accounts": (BOB,),
}


def _expunge_all(cloud: Cloud, address: str) -> list[int]:
    """What a mail client does: flag every INBOX message \\Deleted, then EXPUNGE."""
    region = cloud.home_region(address)
    assert region is not None
    inbox = region.store.mailbox(address, "INBOX")
    uids = [m.uid for m in region.store.messages(inbox.id)]
    region.store.set_flags(inbox.id, uids, frozenset({"\\Deleted"}), "add")
    return region.store.expunge(inbox.id)


def test_preservation_hold_keeps_expunged_mail(cloud: Cloud, desk: LegalDesk) -> None:
    deliver(cloud, BOB, "ledger", "2026-03-01T09:00:00")
    deliver(cloud, BOB, "invoice", "2026-04-01T09:00:00")
    record = desk.submit(request(**PRESERVE, received="2026-11-20"))
    assert {i.outcome for i in record.items} == {"preserve"}
    # One hold for the account, in its home region's store, placed on receipt.
    assert {(i.hold_region, i.hold_id) for i in record.items} == {("us-east", 1)}
    holds = desk.holds()
    assert [(region, h.account) for region, h in holds] == [("us-east", BOB)]
    served = datetime(2026, 11, 20, tzinfo=UTC)
    assert holds[0][1].until == (served + timedelta(days=90)).timestamp()  # 2703(f): 90 days
    assert cloud.region("eu-dublin").store.holds() == []

    assert len(_expunge_all(cloud, BOB)) == 2
    store = cloud.region("us-east").store
    assert store.messages(store.mailbox(BOB, "INBOX").id) == []  # gone for the user ...
    assert len(store.retained(BOB)) == 2  # ... kept for the hold

    approved = desk.approve(record.id, REVIEWERS[0])  # preserving discloses nothing: one person
    assert approved.state == "fulfilled"
    closed = desk.close(record.id, REVIEWERS[0], today=served.date())
    assert [n.account for n in desk.due_notifications(served.date())] == [BOB]
    assert closed.state == "closed"


def test_without_a_hold_expunge_deletes(cloud: Cloud) -> None:
    deliver(cloud, BOB, "ledger", "2026-03-01T09:00:00")
    assert len(_expunge_all(cloud, BOB)) == 1
    assert cloud.region("us-east").store.retained(BOB) == []
