"""`borderline request ...`, `borderline hold list|extend` and `borderline law explain`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    fail,
    open_cloud,
    print_json,
    user_errors,
)
from borderline.law import LawBook, LawEngine, explain_json, explain_text, load_request
from borderline.legal import LegalDesk, RequestRecord, verify_package

request_app = typer.Typer(
    help="Legal requests: submit, review (two people), export, close.", no_args_is_help=True
)
hold_app = typer.Typer(help="Preservation holds.", no_args_is_help=True)
law_app = typer.Typer(help="The law engine.", no_args_is_help=True)

RequestId = Annotated[int, typer.Argument(help="The request's id (see `request list`).")]
ByOption = Annotated[str, typer.Option("--by", help="Who does this (recorded).")]


@contextmanager
def _desk(config: Path) -> Iterator[LegalDesk]:
    with open_cloud(config) as cloud, user_errors(), LegalDesk(cloud) as desk:
        yield desk


def _outcomes(record: RequestRecord) -> str:
    counts = Counter(i.outcome for i in record.items)
    return ", ".join(f"{n} {outcome}" for outcome, n in counts.items())


def _print_record(record: RequestRecord, book: LawBook) -> None:
    console.print(
        emphasis(
            "",
            f"request {record.id}",
            f" {record.reference}: ",
            str(record.state),
            f" ({_outcomes(record)})",
        )
    )
    typer.echo(explain_text(record.request, [i.decision for i in record.items], book))
    typer.echo("")
    for item in record.items:
        hold = f", hold {item.hold_id} in {item.hold_region}" if item.hold_id else ""
        console.print(f"decision {item.id}: {item.account}/{item.category}{hold}", highlight=False)
    if record.ndo_until:
        console.print(f"nondisclosure order until {record.ndo_until}", highlight=False)
    if record.approvers:
        console.print(f"approved by: {', '.join(record.approvers)}", highlight=False)
    if record.reject_reason:
        console.print(f"rejected: {record.reject_reason}", highlight=False)
    emergency = record.emergency()
    if emergency:
        decided = (
            f"decided by {' and '.join(record.approvers)} at {emergency['decided_at']}"
            if emergency["decided_at"]
            else "not decided yet"
        )
        typer.echo(f"emergency: the danger stated: {emergency['danger']}; {decided}")
    for h in record.history:
        note = f": {h.note}" if h.note else ""
        typer.echo(f"  {h.at.isoformat()} {h.state:<10} {h.actor}{note}")


def _show(record: RequestRecord, book: LawBook, as_json: bool) -> None:
    if as_json:
        print_json(record.to_json())
    else:
        _print_record(record, book)


@law_app.command("explain")
def explain(
    request_file: Annotated[Path, typer.Argument(help="A request file (TOML or JSON).")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Dry run: decide REQUEST_FILE against this cloud's custodians and accounts; records
    nothing."""
    with open_cloud(config) as cloud, user_errors():
        request = load_request(request_file)
        engine = LawEngine.load()
        decisions = engine.decide(request, cloud.facts())
    if as_json:
        print_json(explain_json(request, decisions))
    else:
        typer.echo(explain_text(request, decisions, engine.book))


@request_app.command("submit")
def submit(
    request_file: Annotated[Path, typer.Argument(help="A request file (TOML or JSON).")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Record a request, decide each item and place preservation holds."""
    with _desk(config) as desk:
        record = desk.submit_file(request_file)
        book = desk.engine.book
    _show(record, book, as_json)


@request_app.command("list")
def list_requests(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Every request with its state and outcomes."""
    with _desk(config) as desk:
        records = desk.requests()
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "reference": r.reference,
                    "instrument": r.request.instrument.type,
                    "served_on": r.served_on,
                    "state": r.state,
                    "outcomes": dict(Counter(i.outcome for i in r.items)),
                }
                for r in records
            ]
        )
        return
    table = data_table("id", "reference", "instrument", "served on", "state", "outcomes")
    for r in records:
        table.add_row(
            str(r.id), r.reference, r.request.instrument.type, r.served_on, r.state, _outcomes(r)
        )
    console.print(table)


@request_app.command("show")
def show(
    request_id: RequestId, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False
) -> None:
    """A request's decisions with policies and citations, approvals, holds and history."""
    with _desk(config) as desk:
        record = desk.get(request_id)
        book = desk.engine.book
    _show(record, book, as_json)


@request_app.command("approve")
def approve(
    request_id: RequestId,
    by: ByOption,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Approve as one reviewer; a disclosure needs two different people."""
    with _desk(config) as desk:
        record = desk.approve(request_id, by)
    if as_json:
        print_json(record.to_json())
    elif record.state == "in_review":
        console.print(f"request {request_id}: approved by {by}; a second person must approve")
    else:
        console.print(
            f"request {request_id}: {record.state} by {' and '.join(record.approvers)}",
            highlight=False,
        )


@request_app.command("reject")
def reject(
    request_id: RequestId,
    by: ByOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (sent with the refusal).")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Reject a request and record the refusal, with each item's ground or lawful route."""
    with _desk(config) as desk:
        record = desk.reject(request_id, by, reason)
    if as_json:
        print_json(record.to_json())
    else:
        console.print(f"request {request_id}: {record.state} ({reason})", highlight=False)


@request_app.command("export")
def export(
    request_id: RequestId,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the package(s) in.")],
    enforcing_state_confirmed: Annotated[
        bool,
        typer.Option(
            "--enforcing-state-confirmed",
            help="e-Evidence: the enforcing state confirmed it raises no ground for refusal, so"
            " the transfer need not wait for its deadline (Art. 8, 12).",
        ),
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Write the signed disclosure package(s) of an approved request; content keys are
    released through the vault, logged with THIRD_PARTY_DATA_REQUEST and the decision id."""
    with _desk(config) as desk:
        folders = desk.export(request_id, out, enforcing_state_confirmed=enforcing_state_confirmed)
        trusted = {r: desk.cloud.directory.region_keys(r).signing_key for r in folders}
    checks = {r: verify_package(f, [trusted[r]]) for r, f in folders.items()}
    if as_json:
        print_json(
            [
                {
                    "region": r,
                    "folder": str(f),
                    "files": checks[r].files_checked,
                    "ok": checks[r].ok,
                }
                for r, f in folders.items()
            ]
        )
        return
    for r, f in folders.items():
        console.print(
            f"{r}: {f} ({checks[r].files_checked} files, signed by {r}'s custodian)",
            highlight=False,
        )


@request_app.command("verify")
def verify(
    folder: Annotated[Path, typer.Argument(help="A disclosure package folder.")],
    as_json: JsonOption = False,
) -> None:
    """Recompute every hash of a package and check its signature; exit 1 if anything differs."""
    result = verify_package(folder)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "public_key": result.public_key,
                "files": result.files_checked,
                "problems": result.problems,
            }
        )
    elif result.ok:
        console.print(f"{folder}: intact, {result.files_checked} files, key {result.public_key}")
    if not result.ok:
        raise fail(f"{folder}: " + "; ".join(result.problems))


@request_app.command("close")
def close(
    request_id: RequestId,
    by: ByOption,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Close a fulfilled or refused request; notices to affected users are queued (deferred
    while a nondisclosure order is in force)."""
    with _desk(config) as desk:
        record = desk.close(request_id, by)
    if as_json:
        print_json(record.to_json())
    else:
        console.print(f"request {request_id}: closed")


@request_app.command("notifications")
def notifications(
    due: Annotated[
        str | None, typer.Option(help="Notices due by this date (YYYY-MM-DD; default today).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """User notices the law now allows and that have not been sent."""
    with _desk(config) as desk:
        try:
            day = date.fromisoformat(due) if due else datetime.now(UTC).date()
        except ValueError:
            raise ValueError(f"--due: not a date: {due!r}") from None
        rows = desk.due_notifications(day)
    if as_json:
        print_json(
            [
                {
                    "id": n.id,
                    "request": n.request_id,
                    "reference": n.reference,
                    "account": n.account,
                    "due": n.due.isoformat(),
                }
                for n in rows
            ]
        )
        return
    table = data_table("id", "request", "reference", "account", "due")
    for n in rows:
        table.add_row(str(n.id), str(n.request_id), n.reference, n.account, n.due.isoformat())
    console.print(table)


@hold_app.command("list")
def list_holds(config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False) -> None:
    """Active preservation holds in every region."""
    with _desk(config) as desk:
        holds = desk.holds()
    rows = [
        {
            "region": region,
            "id": h.id,
            "account": h.account,
            "reference": h.reference,
            "until": datetime.fromtimestamp(h.until, UTC).isoformat(timespec="seconds"),
        }
        for region, h in holds
    ]
    if as_json:
        print_json(rows)
        return
    table = data_table("region", "id", "account", "reference", "until")
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("region", "id", "account", "reference", "until")))
    console.print(table)


@hold_app.command("extend")
def extend_hold(
    hold_id: Annotated[int, typer.Argument(help="The hold's id (see `hold list`).")],
    by: ByOption,
    region: Annotated[
        str | None, typer.Option("--region", help="The hold's region, if ids repeat.")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="New end (YYYY-MM-DD or a date-time; default: the legal maximum)."),
    ] = None,
    note: Annotated[
        str, typer.Option(help="The authority's renewed request (recorded in the history).")
    ] = "",
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Extend a preservation hold once, on the authority's renewed request, up to the legal
    maximum (2703(f): 90 + 90 days; EPOC-PR: 60 + 30); a second extension is refused."""
    with _desk(config) as desk:
        end = _instant("--until", until) if until else None
        rid, new_end, limit = desk.extend_hold(hold_id, by, region, end, note)
    if as_json:
        print_json(
            {
                "region": rid,
                "id": hold_id,
                "until": new_end.isoformat(),
                "legal_maximum": limit.isoformat(),
            }
        )
    else:
        console.print(
            f"hold {hold_id} in {rid}: extended to {new_end.isoformat()} by {by}"
            f" (legal maximum {limit.isoformat()}; no further extension)",
            highlight=False,
        )


def _instant(option: str, text: str) -> datetime:
    """A date (midnight UTC) or a date-time (naive means UTC) given on the command line."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option}: not a date or date-time: {text}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
