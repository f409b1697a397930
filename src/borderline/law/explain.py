"""Human and machine renderings of a request's decisions (for `borderline law explain`)."""

from __future__ import annotations

from typing import Any

from borderline.law.engine import Decision
from borderline.law.request import LegalRequest


def explain_json(request: LegalRequest, decisions: list[Decision]) -> dict[str, Any]:
    """The request and its decisions as JSON-ready data."""
    return {
        "request": request.model_dump(mode="json", by_alias=True),
        "served_at": request.served_at.isoformat(),
        "law_date": request.law_date.isoformat(),
        "decisions": [d.to_json() for d in decisions],
    }


def explain_text(request: LegalRequest, decisions: list[Decision]) -> str:
    """A plain-text account a reviewer can read top to bottom."""
    ins = request.instrument
    lines = [
        f"Request {request.reference}: {ins.type} issued by a {ins.issued_by} for "
        f"{request.authority.name} ({request.authority.country}), served on {ins.served_on}",
        f"Decided under the law in force on {request.law_date.isoformat()}"
        f" (served {request.served_at.isoformat()})",
    ]
    for d in decisions:
        where = ""
        if d.location:
            loc = d.location
            where = f" [{loc.region}, {loc.jurisdiction}, keys: {loc.custodian}]"
        lines.append("")
        lines.append(f"{d.item.account} / {d.item.category}: {d.outcome.upper()}{where}")
        if d.ground:
            lines.append(f"  ground: {d.ground}")
        if d.route:
            lines.append(f"  route: {d.route}")
        for o in d.obligations:
            due = f" (by {o.due.isoformat()})" if o.due else ""
            lines.append(f"  obligation: {o.text}{due}")
        for dl in d.deadlines:
            ext = f", extendable by {dl.extension_days} days" if dl.extension_days else ""
            lines.append(f"  deadline: {dl.label}: {dl.due.isoformat()}{ext}")
        lines.append(f"  policies: {', '.join(d.policy_ids)}")
        lines.extend(f"  cites: {c}" for c in d.citations)
    return "\n".join(lines)
