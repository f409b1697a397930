"""Preservation: a preservation request places a hold that keeps expunged mail retained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from borderline.cloud import Cloud
from borderline.legal import LegalDesk, LegalError
from borderline.staff import PermissionDenied

from .conftest import ALICE, BOB, Staff, deliver, request

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


def test_preservation_hold_keeps_expunged_mail(cloud: Cloud, desk: LegalDesk, staff: Staff) -> None:
    deliver(cloud, BOB, "ledger", "2026-03-01T09:00:00")
    deliver(cloud, BOB, "invoice", "2026-04-01T09:00:00")
    record = desk.submit(request(**PRESERVE, received="2026-11-20"), staff.cy)
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

    approved = desk.approve(record.id, staff.dee)  # preserving discloses nothing: one person
    assert approved.state == "fulfilled"
    closed = desk.close(record.id, staff.dee, today=served.date())
    assert [n.account for n in desk.due_notifications(served.date())] == [BOB]
    assert closed.state == "closed"


def test_without_a_hold_expunge_deletes(cloud: Cloud) -> None:
    deliver(cloud, BOB, "ledger", "2026-03-01T09:00:00")
    assert len(_expunge_all(cloud, BOB)) == 1
    assert cloud.region("us-east").store.retained(BOB) == []


def test_2703f_hold_is_extended_once_up_to_90_plus_90_days(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(**PRESERVE, received="2026-11-20"), staff.cy)
    served = datetime(2026, 11, 20, tzinfo=UTC)
    ((region, hold),) = desk.holds()
    with pytest.raises(LegalError, match="beyond the legal maximum 2027-05-19T00:00:00"):
        desk.extend_hold(hold.id, staff.cy, until=served + timedelta(days=181))
    with pytest.raises(LegalError, match="not later than the hold's end"):
        desk.extend_hold(hold.id, staff.cy, until=served + timedelta(days=90))
    with pytest.raises(PermissionDenied, match="needs the role legal reviewer"):
        desk.extend_hold(hold.id, staff.dee)
    with pytest.raises(LegalError, match="no live hold"):  # another custodian's hold
        desk.extend_hold(hold.id, staff.ada)
    assert desk.holds()[0][1].until == hold.until  # refusals change nothing

    rid, end, limit = desk.extend_hold(hold.id, staff.cy, note="renewed request R-2")
    assert (rid, end, limit) == (region, served + timedelta(days=180), end)
    assert desk.holds()[0][1].until == end.timestamp()
    assert desk.get(record.id).history[-1].note == (
        f"hold {hold.id} in us-east extended to 2027-05-19T00:00:00+00:00: renewed request R-2"
    )
    with pytest.raises(LegalError, match=r"already extended by Cy Attorney \(staff 3\) on"):
        desk.extend_hold(hold.id, staff.cy, until=end)
    assert [a.kind for a in desk.get(record.id).actions][-1] == "hold-extend"


def test_hold_release_is_signed_and_recorded(cloud: Cloud, desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(**PRESERVE), staff.cy)
    ((region, hold),) = desk.holds()
    with pytest.raises(LegalError, match="give a reason"):
        desk.release_hold(hold.id, staff.cy, " ")
    assert desk.release_hold(hold.id, staff.cy, "the authority withdrew it") == region
    assert desk.holds() == []
    assert desk.get(record.id).history[-1].note == (
        f"hold {hold.id} in us-east released: the authority withdrew it"
    )
    with pytest.raises(LegalError, match="no live hold"):
        desk.release_hold(hold.id, staff.cy, "again")


def test_epoc_pr_hold_is_extended_by_30_days(desk: LegalDesk, staff: Staff) -> None:
    desk.submit(
        request(
            "eu_epoc_pr",
            country="FR",
            served_on="ie-custodian",
            issued_by="prosecutor",
            accounts=(ALICE,),
            categories=("content",),
        ),
        staff.ada,
    )
    ((_, hold),) = desk.holds()
    served = datetime(2026, 11, 20, tzinfo=UTC)
    assert hold.until == (served + timedelta(days=60)).timestamp()
    _, end, _ = desk.extend_hold(hold.id, staff.ada)
    assert end == served + timedelta(days=90)
    with pytest.raises(LegalError, match="no live hold 99"):
        desk.extend_hold(99, staff.ada)
