"""Request records and their lifecycle: decisions per item, two-person approval, rejection."""

from __future__ import annotations

import pytest

from borderline.cloud import Cloud
from borderline.law import LawError
from borderline.legal import TRANSITIONS, LegalDesk, LegalError, State, TransitionError
from borderline.staff import PermissionDenied

from .conftest import ALICE, BOB, Staff, request

pytestmark = pytest.mark.one_engine(
    "request states and decisions live in the legal records, not the mail store"
)


def test_submit_records_decisions_per_item_with_policies(
    cloud: Cloud, desk: LegalDesk, staff: Staff
) -> None:
    warrant = request(
        "us_sca_warrant",
        country="US",
        served_on="us-custodian",
        accounts=(ALICE, BOB),
        categories=("subscriber", "content"),
    )
    record = desk.submit(warrant, staff.cy)
    assert record.state == "decided"
    assert [h.state for h in record.history] == ["received", "decided"]
    outcomes = {(i.account, i.category): i.outcome for i in record.items}
    # Alice's Dublin data is keyed by the Irish custodian: the US one cannot produce it.
    assert outcomes == {
        (ALICE, "subscriber"): "refer",
        (ALICE, "content"): "refer",
        (BOB, "subscriber"): "disclose",
        (BOB, "content"): "disclose",
    }
    alice_content = record.items[1]
    assert alice_content.id == f"req{record.id}-item2"
    assert "control.keys" in alice_content.decision.policy_ids
    assert alice_content.decision.citations
    # Persistent: a new desk on the same cloud reads the same record back.
    with LegalDesk(cloud) as again:
        assert again.get(record.id).items == record.items


def test_two_person_rule(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(), staff.ada)
    first = desk.approve(record.id, staff.ada)
    assert first.state == "in_review" and first.approvers == ("Ada Reviewer (staff 1)",)
    with pytest.raises(LegalError, match="already approved"):
        desk.approve(record.id, staff.ada)
    assert desk.get(record.id).state == "in_review"
    second = desk.approve(record.id, staff.ben)
    assert second.state == "approved"
    assert second.approvers == ("Ada Reviewer (staff 1)", "Ben Counsel (staff 2)")
    assert [a.signature.role for a in second.approvals] == ["legal-reviewer", "security-reviewer"]
    with pytest.raises(TransitionError, match="is approved"):
        desk.approve(record.id, staff.ben)


def test_invalid_transitions_are_refused(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(), staff.ada)
    with pytest.raises(TransitionError, match="only an approved request"):
        desk.export(record.id, desk.cloud.config.cloud.data_dir.parent / "out", staff.ada)
    with pytest.raises(TransitionError, match="decided: it cannot become closed"):
        desk.close(record.id, staff.ada)
    desk.approve(record.id, staff.ada)
    desk.approve(record.id, staff.ben)
    with pytest.raises(TransitionError):
        desk.reject(record.id, staff.ada, "changed my mind")
    with pytest.raises(TransitionError, match="cannot become closed"):
        desk.close(record.id, staff.ada)
    assert TRANSITIONS["closed"] == ()
    with pytest.raises(LegalError, match="no request 999"):
        desk.get(999)


def test_rejection_with_reason_is_refused_then_closed(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(), staff.ada)
    with pytest.raises(LegalError, match="reason"):
        desk.reject(record.id, staff.ada, "  ")
    refused = desk.reject(record.id, staff.ada, "the order was not properly served")
    assert refused.state == "refused"
    assert refused.reject_reason == "the order was not properly served"
    assert [h.state for h in refused.history][-3:] == ["in_review", "rejected", "refused"]
    closed = desk.close(record.id, staff.ben)
    assert closed.state == "closed"
    assert desk.records.notifications(unsent=False) == []  # nothing was disclosed


def test_nothing_to_approve_when_every_item_is_referred(desk: LegalDesk, staff: Staff) -> None:
    warrant = request("us_sca_warrant", country="US", served_on="us-custodian")
    record = desk.submit(warrant, staff.cy)
    assert {i.outcome for i in record.items} == {"refer"}
    with pytest.raises(LegalError, match="nothing to approve"):
        desk.approve(record.id, staff.cy)
    refused = desk.reject(record.id, staff.dee, "no control of the keys: use the MLAT")
    assert "Lawful route: Send a request under the US-Ireland Mutual" in refused.history[-1].note


def test_bad_requests_are_not_recorded(desk: LegalDesk, staff: Staff) -> None:
    with pytest.raises(PermissionDenied, match="served on nobody"):
        desk.submit(request(served_on="nobody"), staff.ada)
    with pytest.raises(LawError, match="no_such_instrument"):
        desk.submit(request(type="no_such_instrument"), staff.ada)
    assert desk.requests() == []
    desk.submit(request(), staff.ada)
    with pytest.raises(LegalError, match="already recorded"):
        desk.submit(request(), staff.ada)
    assert len(desk.requests()) == 1


def test_unknown_account_is_no_data(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(
        request(accounts=("nobody@example.test",), categories=("content",)), staff.ada
    )
    assert [i.outcome for i in record.items] == ["no_data"]
    with pytest.raises(LegalError, match="nothing to approve"):
        desk.approve(record.id, staff.ada)


PATHS: list[tuple[State, ...]] = [
    ("decided",),
    ("decided", "in_review"),
    ("decided", "in_review", "approved"),
    ("decided", "in_review", "approved", "fulfilled"),
    ("decided", "in_review", "approved", "fulfilled", "closed"),
    ("decided", "in_review", "rejected"),
    ("decided", "in_review", "rejected", "refused"),
    ("decided", "in_review", "rejected", "refused", "closed"),
]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p[-1])
def test_every_step_outside_the_lifecycle_is_refused(
    desk: LegalDesk, staff: Staff, path: tuple[State, ...]
) -> None:
    record = desk.submit(request(), staff.ada)
    for state in path[1:]:
        desk.records.transition(record.id, state, "tester")
    current = path[-1]
    assert desk.get(record.id).state == current
    for target in TRANSITIONS:
        if target in TRANSITIONS[current]:
            continue
        with pytest.raises(TransitionError, match=f"is {current}: it cannot become {target}"):
            desk.records.transition(record.id, target, "tester")
    assert desk.get(record.id).state == current
