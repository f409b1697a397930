"""Where a report's plain records come from: the legal desk's records and the region logs."""

from __future__ import annotations

from pathlib import Path

from borderline.legal import LegalRecords, RequestRecord
from borderline.report.transparency import OutcomeClass, RequestSummary

LEGAL_DB = "legal.sqlite"
PENDING_STATES = ("received", "decided", "in_review", "approved")


def outcome_class(record: RequestRecord) -> OutcomeClass:
    outcomes = {i.outcome for i in record.items}
    if outcomes == {"no_data"}:
        return OutcomeClass.NO_DATA
    if record.reject_reason is not None or record.state in ("rejected", "refused"):
        return OutcomeClass.REJECTED
    if record.state in PENDING_STATES:
        return OutcomeClass.PENDING
    disclosed = {i.category for i in record.items if i.outcome == "disclose"}
    if "content" in disclosed:
        return OutcomeClass.CONTENT
    if disclosed:
        return OutcomeClass.NON_CONTENT
    if "preserve" in outcomes:
        return OutcomeClass.PRESERVED
    return OutcomeClass.REJECTED


def refusal_grounds(record: RequestRecord) -> tuple[str, ...]:
    """The policy ids that refused items; "reviewer" when people refused what law allowed."""
    refused = [i for i in record.items if i.outcome in ("reject", "refer")]
    grounds = sorted({(i.decision.policy_ids or ["unstated"])[0] for i in refused})
    return tuple(grounds) or ("reviewer",)


def summarize(record: RequestRecord) -> RequestSummary:
    request = record.request
    outcome = outcome_class(record)
    return RequestSummary(
        reference=record.reference,
        received=request.received.date(),
        country=request.authority.country,
        instrument=request.instrument.type,
        addressee=record.served_on,
        outcome=outcome,
        categories=tuple(request.scope.categories),
        emergency=request.emergency,
        refusal_grounds=refusal_grounds(record) if outcome is OutcomeClass.REJECTED else (),
        decision_ids=tuple(i.id for i in record.items),
    )


def legal_requests(data_dir: Path) -> list[RequestSummary]:
    """Every recorded legal request, summarized; none if the legal desk was never used."""
    path = data_dir / LEGAL_DB
    if not path.exists():
        return []
    records = LegalRecords(path)
    try:
        return [summarize(records.get(i)) for i in records.ids()]
    finally:
        records.shutdown()
