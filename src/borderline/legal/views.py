"""What the desk shows people, as plain data: the command line prints it, the HTTP API returns
it and the console renders it, so all three say the same thing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from borderline.law import LawBook, explain_text
from borderline.legal.records import RequestRecord
from borderline.store import Hold

OPEN_STATES = ("received", "decided", "in_review", "approved")


def next_deadline(record: RequestRecord) -> tuple[datetime, str] | None:
    """The earliest deadline or obligation date still ahead of an open request."""
    if record.state not in OPEN_STATES:
        return None
    dates = [
        (d.due, f"{d.label} ({d.citation})") for i in record.items for d in i.decision.deadlines
    ] + [
        (o.due, f"{o.text} ({o.policy_id})")
        for i in record.items
        for o in i.decision.obligations
        if o.due is not None
    ]
    return min(dates, key=lambda d: d[0]) if dates else None


def time_left(due: datetime, now: datetime) -> str:
    """'3 days 4 hours left', '5 hours left', or 'overdue by 2 days'."""
    seconds = (due - now).total_seconds()
    days, rest = divmod(abs(int(seconds)), 86400)
    hours = rest // 3600
    if days:
        span = f"{days} day{'s' * (days != 1)}" + (f" {hours} h" if hours else "")
    else:
        span = f"{hours} h {rest % 3600 // 60} min"
    return f"{span} left" if seconds >= 0 else f"overdue by {span}"


def outcomes(record: RequestRecord) -> dict[str, int]:
    return dict(Counter(i.outcome for i in record.items))


def summary(record: RequestRecord, now: datetime | None = None) -> dict[str, Any]:
    """One row of the queue."""
    now = now or datetime.now(UTC)
    deadline = next_deadline(record)
    return {
        "id": record.id,
        "reference": record.reference,
        "instrument": record.request.instrument.type,
        "authority": record.request.authority.name,
        "country": record.request.authority.country,
        "served_on": record.served_on,
        "state": record.state,
        "outcomes": outcomes(record),
        "emergency": record.request.emergency,
        "due": deadline[0].isoformat() if deadline else None,
        "due_for": deadline[1] if deadline else None,
        "time_left": time_left(deadline[0], now) if deadline else None,
    }


def queue(records: list[RequestRecord], now: datetime | None = None) -> list[dict[str, Any]]:
    """Open requests first, the nearest deadline first; then the rest, newest first."""
    rows = [summary(r, now) for r in records]
    open_rows = sorted((r for r in rows if r["due"]), key=lambda r: str(r["due"]))
    rest = sorted((r for r in rows if not r["due"]), key=lambda r: -int(r["id"]))
    return open_rows + rest


def request_view(
    record: RequestRecord, book: LawBook, now: datetime | None = None
) -> dict[str, Any]:
    """Everything about one request, with the decisions in words a lawyer reads."""
    return {
        **record.to_json(),
        **{k: v for k, v in summary(record, now).items() if k in ("due", "due_for", "time_left")},
        "explanation": explain_text(record.request, [i.decision for i in record.items], book),
    }


def hold_json(region: str, hold: Hold) -> dict[str, Any]:
    return {
        "region": region,
        "id": hold.id,
        "account": hold.account,
        "reference": hold.reference,
        "until": datetime.fromtimestamp(hold.until, UTC).isoformat(timespec="seconds"),
    }
