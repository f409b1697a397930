"""Transparency reports: legal requests and key accesses for a period, grouped and counted.

`build_report` takes plain records (`RequestSummary`, `RegionLog`), so any source of legal
records plugs in; `borderline.report.sources` builds them from the legal desk and the logs.
The tables follow what readers know from the large providers' reports (requests and accounts
specified, by country, by instrument and by outcome, emergency requests, a trend by
half-year), plus what only this cloud can say: where the data sat (region and custodian)
and how many requests were referred to the lawful route. Every count from 1 to 4 is
published as "<5", in every format, so a small count cannot single out one account holder.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from borderline.report.logview import LogSnapshot

SMALL = 5
EEVIDENCE_INSTRUMENTS = {"eu_epoc": "EPOC (production)", "eu_epoc_pr": "EPOC-PR (preservation)"}
TREND_HALF_YEARS = 6


class OutcomeClass(StrEnum):
    """How a request ended, in the classes the large providers publish, plus ours."""

    CONTENT = "content disclosed"
    NON_CONTENT = "non-content disclosed"
    NO_DATA = "no data found"
    REFERRED = "referred to the lawful route"
    REJECTED = "rejected"
    PRESERVED = "preserved only"
    PENDING = "pending"


DISCLOSED = (OutcomeClass.CONTENT, OutcomeClass.NON_CONTENT)


@dataclass(frozen=True)
class RequestSummary:
    """One legal request as a report sees it: no account names, no content."""

    reference: str
    received: date
    country: str  # of the issuing authority, ISO 3166-1 alpha-2
    instrument: str  # instrument type id, e.g. "eu_epoc"
    addressee: str  # custodian the instrument was served on
    outcome: OutcomeClass
    categories: tuple[str, ...]
    accounts: int = 1  # accounts the request specified
    emergency: bool = False
    nondisclosure: bool = False
    refusal_grounds: tuple[str, ...] = ()  # policy ids (or "reviewer") behind a refusal
    decision_ids: tuple[str, ...] = ()
    public_id: str = ""  # what a lawful key release names on the log
    # Per account found: the region and custodian where its data sat, and what happened there.
    locations: tuple[tuple[str, str, OutcomeClass], ...] = ()


@dataclass(frozen=True)
class Names:
    """Plain names for the ids in the records: a report names things as people do."""

    countries: Mapping[str, str] = field(default_factory=dict)
    instruments: Mapping[str, str] = field(default_factory=dict)
    custodians: Mapping[str, str] = field(default_factory=dict)
    region_locations: Mapping[str, str] = field(default_factory=dict)  # region -> country code

    def country(self, code: str) -> str:
        name = self.countries.get(code)
        return f"{name} ({code})" if name else code


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
    requests: frozenset[str] = frozenset()  # named by lawful releases in the period
    note: bytes = b""  # the signed checkpoint itself

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
            requests=frozenset(e.request for e in events if e.request),
            note=view.note,
        )


def shown(count: int) -> int | str:
    """A count as published: 1-4 become "<5"."""
    return "<5" if 0 < count < SMALL else count


Row = tuple[tuple[str, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Table:
    key: str  # stable identifier, used by CSV and JSON
    title: str
    columns: tuple[str, ...]  # label columns
    measures: tuple[str, ...]  # count columns
    rows: tuple[Row, ...]
    note: str = ""
    chart: str | None = "bars"  # "bars" (first measure), "trend" (by half-year) or None


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


DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "Request",
        "A demand for user data from a government authority: a warrant, court order, "
        "subpoena, production order or preservation request, counted once however many "
        "accounts or data categories it names.",
    ),
    ("Accounts specified", "The accounts a request named, counted once per request."),
    ("Content", "Message bodies and headers, subject lines included."),
    (
        "Non-content",
        "Subscriber data (who holds the account), identification and traffic data "
        "(sizes, dates, login times and addresses).",
    ),
    (
        OutcomeClass.CONTENT.value,
        "Some content was disclosed (non-content may have been too).",
    ),
    (OutcomeClass.NON_CONTENT.value, "Only non-content was disclosed."),
    (OutcomeClass.NO_DATA.value, "None of the accounts named exists on this cloud."),
    (
        OutcomeClass.REFERRED.value,
        "The instrument was not valid where the data is stored, or did not bind the custodian "
        "holding its keys; the authority was told which lawful route reaches the data (for "
        "example a mutual legal assistance request to the country where it is stored), and "
        "nothing was disclosed.",
    ),
    (
        OutcomeClass.REJECTED.value,
        "Refused on other grounds (defective, overbroad, refused by the reviewers); nothing "
        "was disclosed.",
    ),
    (OutcomeClass.PRESERVED.value, "Data was preserved, as asked; nothing was disclosed."),
    (OutcomeClass.PENDING.value, "Not answered yet at the end of the period."),
    (
        "Region and custodian",
        "Where the data of an account specified sat: the data centre (region, in its "
        "country) and the legal entity holding that region's keys, which is who a court can "
        "compel.",
    ),
    (
        "Emergency request",
        "A request made on the ground of an imminent threat to life or physical safety.",
    ),
    (
        "Nondisclosure order",
        "An order barring notice to the account holder; every access under it is logged at "
        "once as a sealed commitment and revealed when the order lapses.",
    ),
    (
        "Key release",
        "The vault handing out an account's data key, logged before the key leaves: a user "
        "reading their mail (CUSTOMER_INITIATED_ACCESS), support at the user's request, a "
        "lawful disclosure (THIRD_PARTY_DATA_REQUEST) or a system operation.",
    ),
)

METHOD = (
    "Requests are counted by the day they were received, from the legal desk's records; "
    "each request is classed by its final outcome at the time the report was computed.",
    'Every count from 1 to 4 is published as "<5", and drawn as a band from 1 to 4, so that '
    "a small number cannot single out a person. Zero is shown as 0. Checkpoint sizes are not "
    "counts of people and are exact.",
    "Key releases are counted from each region's transparency log, read at the signed "
    "checkpoint named below and verified entry by entry, never from a separate database. A "
    "lawful key release names the public id of its request, and the report checks every one "
    "against the request records.",
    "The trend covers the last half-years up to the end of the period, whatever the period.",
    "The report is signed by the key of every region it covers, over its SHA-256 hash and "
    "the checkpoints it was computed at; the command borderline report verify checks both, "
    "and that each checkpoint is in that region's log history.",
)


def _outcome_counts(requests: Sequence[RequestSummary]) -> tuple[int, ...]:
    counts = Counter(r.outcome for r in requests)
    return tuple(counts[o] for o in OutcomeClass)


def _grouped(
    key: str,
    title: str,
    columns: tuple[str, ...],
    requests: Sequence[RequestSummary],
    label: Callable[[RequestSummary], tuple[str, ...]],
    note: str = "",
) -> Table:
    """Requests, accounts specified and every outcome class, per group."""
    groups: dict[tuple[str, ...], list[RequestSummary]] = {}
    for r in requests:
        groups.setdefault(label(r), []).append(r)
    rows = tuple(
        (labels, (len(group), sum(r.accounts for r in group), *_outcome_counts(group)))
        for labels, group in sorted(groups.items())
    )
    measures = ("requests", "accounts specified", *(o.value for o in OutcomeClass))
    return Table(key, title, columns, measures, rows, note)


def _half_year(day: date) -> tuple[int, int]:
    return day.year, 1 if day.month <= 6 else 2


def _trend(every: Sequence[RequestSummary], end: date) -> Table:
    last = _half_year(end)
    halves = [last]
    while len(halves) < TREND_HALF_YEARS:
        year, half = halves[-1]
        halves.append((year, 1) if half == 2 else (year - 1, 2))
    halves.reverse()
    rows = []
    for year, half in halves:
        group = [r for r in every if _half_year(r.received) == (year, half) and r.received <= end]
        rows.append(
            (
                (f"H{half} {year}",),
                (
                    len(group),
                    sum(r.accounts for r in group),
                    sum(1 for r in group if r.outcome in DISCLOSED),
                    sum(1 for r in group if r.outcome is OutcomeClass.REFERRED),
                    sum(1 for r in group if r.outcome is OutcomeClass.REJECTED),
                ),
            )
        )
    return Table(
        "trend",
        "Trend by half-year",
        ("half-year",),
        ("requests", "accounts specified", "some data disclosed", "referred", "rejected"),
        tuple(rows),
        note=f"The last {TREND_HALF_YEARS} half-years up to the end of the period.",
        chart="trend",
    )


def _by_location(requests: Sequence[RequestSummary], names: Names) -> Table:
    """Per place, the requests that reached data there, counted by what happened to that data
    (a warrant disclosing in one region may be referred in another)."""
    at: dict[tuple[str, str], dict[int, OutcomeClass]] = {}
    accounts: Counter[tuple[str, str]] = Counter()
    order = list(OutcomeClass)
    for n, r in enumerate(requests):
        for region, custodian, outcome in r.locations:
            place = at.setdefault((region, custodian), {})
            best = place.get(n)
            if best is None or order.index(outcome) < order.index(best):
                place[n] = outcome
            accounts[(region, custodian)] += 1
    rows = []
    for (region, custodian), outcomes in sorted(at.items()):
        location = names.region_locations.get(region, "")
        counts = Counter(outcomes.values())
        labels = (
            region,
            names.country(location) if location else "",
            names.custodians.get(custodian, custodian),
        )
        rows.append(
            (
                labels,
                (
                    len(outcomes),
                    accounts[(region, custodian)],
                    counts[OutcomeClass.CONTENT],
                    counts[OutcomeClass.NON_CONTENT],
                    counts[OutcomeClass.REFERRED],
                    counts[OutcomeClass.REJECTED],
                ),
            )
        )
    return Table(
        "by_region_and_custodian",
        "Requests by where the data sat: region and custodian",
        ("region", "located in", "custodian (holds the keys)"),
        (
            "requests",
            "accounts specified",
            OutcomeClass.CONTENT.value,
            OutcomeClass.NON_CONTENT.value,
            OutcomeClass.REFERRED.value,
            OutcomeClass.REJECTED.value,
        ),
        tuple(rows),
        note="A request naming accounts in several regions counts once in each, by what "
        "happened to the data there; accounts that do not exist sit nowhere and are not "
        "counted here.",
        chart=None,
    )


def _special(requests: Sequence[RequestSummary]) -> Table:
    rows = []
    for label, group in (
        ("emergency requests", [r for r in requests if r.emergency]),
        ("requests under a nondisclosure order", [r for r in requests if r.nondisclosure]),
    ):
        rows.append(
            ((label,), (len(group), sum(r.accounts for r in group), *_outcome_counts(group)))
        )
    return Table(
        "emergency_and_nondisclosure",
        "Emergency requests and nondisclosure orders",
        ("kind",),
        ("requests", "accounts specified", *(o.value for o in OutcomeClass)),
        tuple(rows),
        chart=None,
    )


def _single(
    key: str,
    title: str,
    columns: tuple[str, ...],
    counts: Iterable[tuple[tuple[str, ...], int]],
    note: str = "",
    chart: str | None = "bars",
) -> Table:
    """A table of one count per row."""
    rows = tuple((labels, (n,)) for labels, n in counts)
    return Table(key, title, columns, ("count",), rows, note, chart)


def _eevidence(requests: Sequence[RequestSummary]) -> list[Table]:
    """Regulation (EU) 2023/1543 Art. 28 statistics: orders by type, data category,
    addressee and emergency, fulfilled or not, and the grounds of refusal."""
    orders = [r for r in requests if r.instrument in EEVIDENCE_INSTRUMENTS]
    status = {
        OutcomeClass.CONTENT: "fulfilled",
        OutcomeClass.NON_CONTENT: "fulfilled",
        OutcomeClass.PRESERVED: "fulfilled",
        OutcomeClass.NO_DATA: "no data",
        OutcomeClass.REFERRED: "not fulfilled",
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
        g
        for r in orders
        if r.outcome in (OutcomeClass.REJECTED, OutcomeClass.REFERRED)
        for g in r.refusal_grounds
    )
    return [
        _single(
            "eevidence_orders",
            "e-Evidence orders (Regulation (EU) 2023/1543, Art. 28)",
            ("order", "data category", "addressee", "situation", "result"),
            sorted(breakdown.items()),
            note="An order naming several data categories counts once per category.",
            chart=None,
        ),
        _single(
            "eevidence_refusals",
            "e-Evidence orders refused, by ground",
            ("ground",),
            sorted(((g,), n) for g, n in grounds.items()),
            chart=None,
        ),
    ]


def build_report(
    requests: Iterable[RequestSummary],
    logs: Sequence[RegionLog],
    start: date,
    end: date,
    cloud: str = "Borderline",
    generated: datetime | None = None,
    names: Names | None = None,
) -> Report:
    """Group the period's requests and the logs' key releases into the published tables."""
    if end < start:
        raise ValueError(f"--to ({end}) is before --from ({start})")
    names = names or Names()
    every = list(requests)
    period = [r for r in every if start <= r.received <= end]
    known = {r.public_id for r in every} | {d for r in every for d in r.decision_ids}
    some_data = [r for r in period if r.outcome in DISCLOSED]
    tables = [
        _single(
            "summary",
            "Summary",
            ("",),
            [
                (("requests received",), len(period)),
                (("accounts specified",), sum(r.accounts for r in period)),
                (("requests in which some data was disclosed",), len(some_data)),
                (
                    ("requests referred to the lawful route",),
                    sum(1 for r in period if r.outcome is OutcomeClass.REFERRED),
                ),
                (("emergency requests",), sum(1 for r in period if r.emergency)),
                (
                    ("requests under a nondisclosure order",),
                    sum(1 for r in period if r.nondisclosure),
                ),
            ],
            chart=None,
        ),
        Table(
            "by_outcome",
            "Requests and accounts by outcome",
            ("outcome",),
            ("requests", "accounts specified"),
            tuple(
                (
                    (o.value,),
                    (
                        sum(1 for r in period if r.outcome is o),
                        sum(r.accounts for r in period if r.outcome is o),
                    ),
                )
                for o in OutcomeClass
            ),
        ),
        _grouped(
            "by_country",
            "Requests by country of the issuing authority",
            ("country",),
            period,
            lambda r: (names.country(r.country),),
        ),
        _grouped(
            "by_instrument",
            "Requests by instrument",
            ("instrument",),
            period,
            lambda r: (names.instruments.get(r.instrument, r.instrument),),
        ),
        _by_location(period, names),
        _special(period),
        _trend(every, end),
        *_eevidence(period),
        _single(
            "key_releases",
            "Key releases by justification (from the transparency logs)",
            ("region", "justification"),
            [((log.region, j), n) for log in logs for j, n in sorted(log.accesses.items())],
        ),
        _single(
            "sealed_accesses",
            "Sealed accesses (nondisclosure orders), whole log",
            ("region", "state"),
            [
                row
                for log in logs
                for row in (
                    ((log.region, "logged as a seal"), log.sealed),
                    ((log.region, "still sealed"), log.still_sealed),
                )
            ],
            note="Sealed entries carry no time until revealed: counted for the whole log.",
            chart=None,
        ),
        _single(
            "unknown_requests",
            "Lawful key releases naming a request unknown to the request records",
            ("region",),
            [((log.region,), len(log.requests - known)) for log in logs],
            note="A cross-check of the logs against the request records; expected to be 0.",
            chart=None,
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
