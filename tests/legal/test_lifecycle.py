"""Request records and their lifecycle: decisions per item, two-person approval, rejection."""

from __future__ import annotations

import pytest

from borderline.cloud import Cloud
from borderline.law import LawError
from borderline.legal import TRANSITIONS, LegalDesk, LegalError, State, TransitionError

from .conftest import ALICE, BOB, REVIEWERS, request

pytestmark = pytest.mark.one_engine(
    "request states and decisions live in the legal records, not the mail store"
)


def test_submit_records_decisions_per_item_with_policies(cloud: Cloud, desk: LegalDesk) -> None:
    warrant = request(
        "us_sca_warrant",
        country="US",
        served_on="us-custodian",
        accounts=(ALICE, BOB),
        categories=("subscriber", "content"),
    )
    record = desk.submit(warrant)
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


def test_two_person_rule(desk: LegalDesk) -> None:
    record = desk.submit(request())
    first = desk.approve(record.id, REVIEWERS[0])
    assert first.state == "in_review" and first.approvers == (REVIEWERS[0],)
    with pytest.raises(LegalError, match="already approved"):
        desk.approve(record.id, f"  {REVIEWERS[0].upper()} ")
    assert desk.get(record.id).state == "in_review"
    second = desk.approve(record.id, REVIEWERS[1])
    assert second.state == "approved"
    assert second.approvers == REVIEWERS
    with pytest.raises(TransitionError, match="is approved"):
        desk.approve(record.id, "Cy Third")
    with pytest.raises(LegalError, match="must be named"):
        desk.approve(desk.submit(request(reference="T-2")).id, "   ")


def test_invalid_transitions_are_refused(desk: LegalDesk) -> None:
    record = desk.submit(request())
    with pytest.raises(TransitionError, match="only an approved request"):
        desk.export(record.id, desk.cloud.config.cloud.data_dir.parent / "out")
    with pytest.raises(TransitionError, match="decided: it cannot become closed"):
        desk.close(record.id, REVIEWERS[0])
    desk.approve(record.id, REVIEWERS[0])
    desk.approve(record.id, REVIEWERS[1])
    with pytest.raises(TransitionError):
        desk.reject(record.id, REVIEWERS[0], "changed my mind")
    with pytest.raises(TransitionError, match="cannot become closed"):
        desk.close(record.id, REVIEWERS[0])
    assert TRANSITIONS["closed"] == ()
    with pytest.raises(LegalError, match="no request 999"):
        desk.get(999)


def test_rejection_with_reason_is_refused_then_closed(desk: LegalDesk) -> None:
    record = desk.submit(request())
    with pytest.raises(LegalError, match="reason"):
        desk.reject(record.id, REVIEWERS[0], "  ")
    refused = desk.reject(record.id, REVIEWERS[0], "the order was not properly served")
    assert refused.state == "refused"
    assert refused.reject_reason == "the order was not properly served"
    assert [h.state for h in refused.history][-3:] == ["in_review", "rejected", "refused"]
    closed = desk.close(record.id, REVIEWERS[1])
    assert closed.state == "closed"
    assert desk.records.notifications(unsent=False) == []  # nothing was disclosed


def test_nothing_to_approve_when_every_item_is_referred(desk: LegalDesk) -> None:
    warrant = request("us_sca_warrant", country="US", served_on="us-custodian")
    record = desk.submit(warrant)
    assert {i.outcome for i in record.items} == {"refer"}
    with pytest.raises(LegalError, match="nothing to approve"):
        desk.approve(record.id, REVIEWERS[0])
    refused = desk.reject(record.id, REVIEWERS[0], "no control of the keys: use the MLAT")
    assert "Lawful route: Send a request under the US-Ireland Mutual" in refused.history[-1].note


def test_bad_requests_are_not_recorded(desk: LegalDesk) -> None:
    with pytest.raises(LawError, match="served_on"):
        desk.submit(request(served_on="nobody"))
    assert desk.requests() == []
    desk.submit(request())
    with pytest.raises(LegalError, match="already recorded"):
        desk.submit(request())
    assert len(desk.requests()) == 1


def test_unknown_account_is_no_data(desk: LegalDesk) -> None:
    record = desk.submit(request(accounts=("nobody@example.test",), categories=("content",)))
    assert [i.outcome for i in record.items] == ["no_data"]
    with pytest.raises(LegalError, match="nothing to approve"):
        desk.approve(record.id, REVIEWERS[0])


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
    desk: LegalDesk, path: tuple[State, ...]
) -> None:
    record = desk.submit(request())
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
