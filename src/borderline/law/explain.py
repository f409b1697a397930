"""Human and machine renderings of a request's decisions (for `borderline law explain`).

The text is for a lawyer reading top to bottom: for each item the outcome, then in full
sentences its basis or the reasons it is refused, the lawful route, the obligations and
deadlines, each followed by the citations it rests on.
"""

from __future__ import annotations

from typing import Any

from borderline.law.engine import ISSUER_WORDS, Decision, Reason
from borderline.law.knowledge import LawBook
from borderline.law.request import LegalRequest

HEADINGS = {"basis": "Basis", "ground": "Refused because"}


def explain_json(request: LegalRequest, decisions: list[Decision]) -> dict[str, Any]:
    """The request and its decisions as JSON-ready data."""
    return {
        "request": request.model_dump(mode="json", by_alias=True),
        "served_at": request.served_at.isoformat(),
        "law_date": request.law_date.isoformat(),
        "decisions": [d.to_json() for d in decisions],
    }


def _cited(text: str, citations: list[str]) -> str:
    return f"{text} [{'; '.join(citations)}]" if citations else text


def _sentence(heading: str, text: str) -> str:
    return f"   {heading}: {text}"


def _reasons(d: Decision) -> list[str]:
    lines = []
    for reason in d.reasons:
        heading = HEADINGS.get(reason.role)
        if heading is not None:
            lines.append(_sentence(heading, _cited(reason.text, reason.citations)))
    return lines


def _routes(d: Decision) -> list[str]:
    routes: list[Reason] = [
        r for r in d.reasons if r.role == "route" or (r.role == "engine" and r.text in d.routes)
    ]
    lines = []
    for n, reason in enumerate(routes):
        heading = "Lawful route" if n == 0 else "Also possible"
        if reason.role == "engine":
            heading = "Lawful route: none"
        lines.append(_sentence(heading, _cited(reason.text, reason.citations)))
    return lines


def _decision(n: int, d: Decision) -> list[str]:
    outcome = d.outcome.upper() + (" (voluntary: the custodian decides)" if d.voluntary else "")
    lines = [f"{n}. {d.item.account} / {d.item.category}: {outcome}"]
    if d.location:
        loc = d.location
        lines.append(
            _sentence("Where", f"region {loc.region} ({loc.jurisdiction}); keys: {loc.custodian}.")
        )
    lines += _reasons(d)
    lines += _routes(d)
    for o in d.obligations:
        due = f" Due by {o.due.isoformat()}." if o.due else ""
        holds = " The transfer waits until then." if o.holds_transfer else ""
        lines.append(_sentence("Obligation", _cited(o.text + due + holds, o.citations)))
    for dl in d.deadlines:
        ext = f" It may be extended once, by {dl.extension_days} days." if dl.extension_days else ""
        text = f"{dl.label[0].upper()}{dl.label[1:]}: by {dl.due.isoformat()}.{ext}"
        lines.append(_sentence("Deadline", _cited(text, [dl.citation])))
    if d.data_until and d.outcome in ("disclose", "preserve"):
        lines.append(
            _sentence(
                "Period",
                f"only data that existed when the order was served ({d.data_until.isoformat()}).",
            )
        )
    for note in d.later_history:
        lines.append(_sentence(f"Later history (not the law on {d.law_date})", note))
    lines.append(_sentence("Policies", ", ".join(d.policy_ids)))
    return lines


def explain_text(request: LegalRequest, decisions: list[Decision], book: LawBook) -> str:
    """A plain-text account a reviewer can read top to bottom, ending with what counsel should
    still confirm about the laws the decisions cite."""
    ins = request.instrument
    spec = book.instruments[ins.type]
    day = request.law_date
    lines = [
        f"Request {request.reference}: {spec.name} ({ins.type}), issued by"
        f" {ISSUER_WORDS[ins.issued_by]} for {request.authority.name}"
        f" ({request.authority.country}), served on {ins.served_on} at"
        f" {request.served_at.isoformat()}.",
        _cited(
            f"Decided under the law in force on {day.isoformat()}.",
            book.citations(list(spec.laws), day),
        ),
    ]
    if request.emergency:
        lines.append(f"Emergency declared. The danger stated: {request.danger}")
    for n, d in enumerate(decisions, 1):
        lines.append("")
        lines += _decision(n, d)
    cited = {c for d in decisions for c in d.citations}
    notes = [
        f"  {law.citation}: {law.note}"
        for law in book.laws.values()
        if law.note and law.citation in cited
    ]
    if notes:
        lines += ["", "To confirm with counsel:", *notes]
    return "\n".join(lines)
