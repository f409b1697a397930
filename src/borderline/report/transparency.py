"""Transparency reports: legal requests and key accesses for a period, grouped and counted.

`build_report` takes plain records (`RequestSummary`, `RegionLog`), so any source of legal
records plugs in; `borderline.report.sources` builds them from the legal desk and the logs.
Every count from 1 to 4 is published as "<5", in every format, so a small count cannot
single out one account holder.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from borderline.report.logview import LogSnapshot

SMALL = 5
EEVIDENCE_INSTRUMENTS = {"eu_epoc": "EPOC (production)", "eu_epoc_pr": "EPOC-PR (preservation)"}


class OutcomeClass(StrEnum):
    """How a request ended, in the classes the large providers publish."""

    REJECTED = "rejected"
    NO_DATA = "no data found"
    NON_CONTENT = "non-content disclosed"
    CONTENT = "content disclosed"
    PRESERVED = "preserved only"
    PENDING = "pending"


@dataclass(frozen=True)
class RequestSummary:
    """One legal request as a report sees it: no account names, no content."""

    reference: str
    received: date
    country: str  # of the issuing authority
    instrument: str  # instrument type id, e.g. "eu_epoc"
    addressee: str  # custodian the instrument was served on
    outcome: OutcomeClass
    categories: tuple[str, ...]
    emergency: bool = False
    refusal_grounds: tuple[str, ...] = ()  # policy ids (or "reviewer") behind a refusal
    decision_ids: tuple[str, ...] = ()  # what a lawful key release names in the log


@dataclass(frozen=True)
class RegionLog:
    """One region's log at the checkpoint the report was computed at."""

    region: str
    origin: str
    size: int
    root: bytes
    accesses: dict[str, int]  # justification -> key releases in the period
    sealed: int  # sealed-access commitments in the whole log
    still_sealed: int
    decisions: frozenset[str] = field(default_factory=frozenset)  # named by releases in period

    @classmethod
    def from_snapshot(cls, region: str, view: LogSnapshot, start: date, end: date) -> RegionLog:
        events = [e for e in view.events() if start <= e.time.date() <= end]
        sealed = len(view.sealed_indices())
        return cls(
            region=region,
            origin=view.checkpoint.origin,
            size=view.size,
            root=view.checkpoint.root,
            accesses=dict(Counter(e.justification for e in events)),
            sealed=sealed,
            still_sealed=sealed - len(view.revealed()),
            decisions=frozenset(e.decision for e in events if e.decision),
        )


def shown(count: int) -> int | str:
    """A count as published: 1-4 become "<5"."""
    return "<5" if 0 < count < SMALL else count


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]  # label columns; the last column is always "count"
    rows: tuple[tuple[tuple[str, ...], int], ...]
    note: str = ""
    chart: bool = True


def _counted(
    title: str,
    column: str,
    requests: Iterable[RequestSummary],
    key: Callable[[RequestSummary], str],
    order: Sequence[str] = (),
) -> Table:
    counts = Counter(key(r) for r in requests)
    labels = list(order) + sorted(k for k in counts if k not in order)
    return Table(title, (column,), tuple(((label,), counts[label]) for label in labels))


@dataclass(frozen=True)
class Report:
    cloud: str
    start: date
    end: date
    generated: datetime
    logs: tuple[RegionLog, ...]
    tables: tuple[Table, ...]

    def checkpoints(self) -> list[dict[str, str | int]]:
        return [
            {
                "region": log.region,
                "origin": log.origin,
                "size": log.size,
                "root": base64.b64encode(log.root).decode(),
            }
            for log in self.logs
        ]


def _eevidence(requests: Sequence[RequestSummary]) -> list[Table]:
    """Regulation (EU) 2023/1543 Art. 28 statistics: orders by type, data category,
    addressee and emergency, fulfilled or not, and the grounds of refusal."""
    orders = [r for r in requests if r.instrument in EEVIDENCE_INSTRUMENTS]
    status = {
        OutcomeClass.CONTENT: "fulfilled",
        OutcomeClass.NON_CONTENT: "fulfilled",
        OutcomeClass.PRESERVED: "fulfilled",
        OutcomeClass.NO_DATA: "no data",
        OutcomeClass.REJECTED: "not fulfilled",
        OutcomeClass.PENDING: "pending",
    }
    breakdown: Counter[tuple[str, ...]] = Counter()
    for r in orders:
        for category in r.categories:
            breakdown[
                (
                    EEVIDENCE_INSTRUMENTS[r.instrument],
                    category,
                    r.addressee,
                    "emergency" if r.emergency else "normal",
                    status[r.outcome],
                )
            ] += 1
    grounds = Counter(
        g for r in orders if r.outcome is OutcomeClass.REJECTED for g in r.refusal_grounds
    )
    return [
        Table(
            "e-Evidence orders (Regulation (EU) 2023/1543, Art. 28)",
            ("order", "data category", "addressee", "situation", "result"),
            tuple(sorted(breakdown.items())),
            note="An order naming several data categories counts once per category.",
            chart=False,
        ),
        Table(
            "e-Evidence orders refused, by ground",
            ("ground",),
            tuple(((g,), n) for g, n in sorted(grounds.items())),
        ),
    ]


def build_report(
    requests: Iterable[RequestSummary],
    logs: Sequence[RegionLog],
    start: date,
    end: date,
    cloud: str = "Borderline",
    generated: datetime | None = None,
) -> Report:
    """Group the period's requests and the logs' key releases into the published tables."""
    if end < start:
        raise ValueError(f"--to ({end}) is before --from ({start})")
    every = list(requests)
    period = [r for r in every if start <= r.received <= end]
    known_decisions = {d for r in every for d in r.decision_ids}
    tables = [
        _counted(
            "Requests by outcome", "outcome", period, lambda r: r.outcome.value, list(OutcomeClass)
        ),
        _counted(
            "Requests by country of the issuing authority", "country", period, lambda r: r.country
        ),
        _counted("Requests by instrument", "instrument", period, lambda r: r.instrument),
        *_eevidence(period),
        Table(
            "Key releases by justification (from the transparency logs)",
            ("region", "justification"),
            tuple(((log.region, j), n) for log in logs for j, n in sorted(log.accesses.items())),
        ),
        Table(
            "Sealed accesses (nondisclosure orders), whole log",
            ("region", "state"),
            tuple(
                row
                for log in logs
                for row in (
                    ((log.region, "logged as a commitment"), log.sealed),
                    ((log.region, "still sealed"), log.still_sealed),
                )
            ),
            note="Sealed entries carry no time until revealed: counted for the whole log.",
        ),
        Table(
            "Lawful key releases naming a decision unknown to the request records",
            ("region",),
            tuple(((log.region,), len(log.decisions - known_decisions)) for log in logs),
            note="A cross-check of the logs against the request records; expected to be 0.",
            chart=False,
        ),
    ]
    return Report(
        cloud=cloud,
        start=start,
        end=end,
        generated=generated or datetime.now().astimezone(),
        logs=tuple(logs),
        tables=tuple(tables),
    )
