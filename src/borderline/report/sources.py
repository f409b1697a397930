"""Where a report's plain records come from: the legal desk's records and the region logs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from borderline.config import Config
from borderline.law import LawBook
from borderline.legal import LegalRecords, RequestRecord
from borderline.legal.records import ItemRecord, public_request_id
from borderline.report.transparency import Names, OutcomeClass, RequestSummary

LEGAL_DB = "legal.sqlite"
PENDING_STATES = ("received", "decided", "in_review", "approved")


def outcome_class(record: RequestRecord, items: Sequence[ItemRecord] | None = None) -> OutcomeClass:
    """The request's final outcome (for `items` only: the data in one place). A request none
    of whose items could be disclosed because the instrument does not reach the data where it
    is stored was referred to the lawful route (the refusal letter names it), not rejected."""
    items = record.items if items is None else items
    outcomes = {i.outcome for i in items}
    if outcomes == {"no_data"}:
        return OutcomeClass.NO_DATA
    refused = record.reject_reason is not None or record.state in ("rejected", "refused")
    if record.state in PENDING_STATES and not refused:
        return OutcomeClass.PENDING
    disclosed = {i.category for i in items if i.outcome == "disclose"}
    if not refused and "content" in disclosed:
        return OutcomeClass.CONTENT
    if not refused and disclosed:
        return OutcomeClass.NON_CONTENT
    if not refused and "preserve" in outcomes:
        return OutcomeClass.PRESERVED
    if "refer" in outcomes:
        return OutcomeClass.REFERRED
    return OutcomeClass.REJECTED


def refusal_grounds(record: RequestRecord) -> tuple[str, ...]:
    """The policy ids that refused items; "reviewer" when people refused what law allowed."""
    refused = [i for i in record.items if i.outcome in ("reject", "refer")]
    grounds = sorted({(i.decision.policy_ids or ["unstated"])[0] for i in refused})
    return tuple(grounds) or ("reviewer",)


def summarize(record: RequestRecord) -> RequestSummary:
    request = record.request
    outcome = outcome_class(record)
    places: dict[tuple[str, str, str], list[ItemRecord]] = {}
    for item in record.items:
        if item.decision.location is not None:
            where = item.decision.location
            places.setdefault((item.account, where.region, where.custodian), []).append(item)
    return RequestSummary(
        reference=record.reference,
        received=request.received.date(),
        country=request.authority.country,
        instrument=request.instrument.type,
        addressee=record.served_on,
        outcome=outcome,
        categories=tuple(request.scope.categories),
        accounts=len(request.scope.accounts),
        emergency=request.emergency,
        nondisclosure=record.ndo_until is not None,
        refusal_grounds=(
            refusal_grounds(record)
            if outcome in (OutcomeClass.REJECTED, OutcomeClass.REFERRED)
            else ()
        ),
        decision_ids=tuple(i.id for i in record.items),
        public_id=public_request_id(record.id),
        locations=tuple(
            sorted(
                (region, custodian, outcome_class(record, items))
                for (_, region, custodian), items in places.items()
            )
        ),
    )


def names(config: Config) -> Names:
    """Plain names: instruments and countries from the law data, custodians from the config."""
    book = LawBook()
    return Names(
        countries={code: j.name for code, j in book.jurisdictions.items()},
        instruments={i: t.name for i, t in book.instruments.items()},
        custodians={c.id: c.name for c in config.custodians},
        region_locations={r.id: r.location for r in config.regions},
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
