"""`borderline request ...`, `borderline hold list|extend|release` and `borderline law explain`.

Every command that reads or changes the desk acts as one person, authenticated by their staff
token (`borderline staff token`), on the running server when there is one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    fail,
    load,
    open_cloud,
    print_json,
    user_errors,
)
from borderline.cli.legal_client import Local, Remote, RemoteError, acting
from borderline.cli.staff_cmd import TokenOption
from borderline.law import LawEngine, explain_json, explain_text, load_request
from borderline.legal import LegalDesk, Verification, verify_package
from borderline.legal.office import trusted_verification, unpacked
from borderline.legal.views import hold_json, queue, request_view
from borderline.staff import StaffRoster

request_app = typer.Typer(
    help="Legal requests: submit, review (two people), export, close.", no_args_is_help=True
)
hold_app = typer.Typer(help="Preservation holds.", no_args_is_help=True)
law_app = typer.Typer(help="The law engine.", no_args_is_help=True)

RequestId = Annotated[int, typer.Argument(help="The request's id (see `request list`).")]


def _view(local: Local, record: Any) -> dict[str, Any]:
    return request_view(record, local.desk.engine.book)


def _outcomes(view: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for item in view["items"]:
        counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in counts.items())


def _print_record(view: dict[str, Any]) -> None:
    console.print(
        emphasis(
            "",
            f"request {view['id']}",
            f" {view['reference']}: ",
            str(view["state"]),
            f" ({_outcomes(view)})",
        )
    )
    if view.get("time_left"):
        typer.echo(f"next deadline {view['due']} ({view['time_left']}): {view['due_for']}")
    typer.echo(view["explanation"])
    typer.echo("")
    for item in view["items"]:
        hold = f", hold {item['hold_id']} in {item['hold_region']}" if item["hold_id"] else ""
        typer.echo(f"decision {item['decision_id']}: {item['account']}/{item['category']}{hold}")
    if view["nondisclosure_until"]:
        typer.echo(f"nondisclosure order until {view['nondisclosure_until']}")
    for approval in view["approvals"]:
        typer.echo(f"approved by: {approval['actor']} as {approval['role']}, signed")
    if view["reject_reason"]:
        typer.echo(f"rejected: {view['reject_reason']}")
    emergency = view["emergency"]
    if emergency:
        decided = (
            f"decided by {' and '.join(emergency['decided_by'])} at {emergency['decided_at']}"
            if emergency["decided_at"]
            else "not decided yet"
        )
        typer.echo(f"emergency: the danger stated: {emergency['danger']}; {decided}")
    for h in view["history"]:
        note = f": {h['note']}" if h["note"] else ""
        typer.echo(f"  {h['at']} {h['state']:<10} {h['actor']}{note}")


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(view)
    else:
        _print_record(view)


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
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Record a request (as intake), decide each item and place preservation holds."""

    def remote(server: Remote) -> dict[str, Any]:
        with user_errors():
            data = request_file.read_bytes()
        return dict(
            server.call("POST", "/legal/requests", files={"file": (request_file.name, data)})
        )

    with acting(
        config,
        token,
        lambda local: _view(local, local.desk.submit_file(request_file, local.signer)),
        remote,
    ) as view:
        _show(view, as_json)


@request_app.command("list")
def list_requests(
    token: TokenOption = None, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False
) -> None:
    """The queue: open requests by nearest deadline, with the time left; then the others."""
    with acting(
        config,
        token,
        lambda local: queue(local.desk.requests(local.signer)),
        lambda server: list(server.call("GET", "/legal/requests")),
    ) as rows:
        if as_json:
            print_json(rows)
            return
        table = data_table("id", "reference", "instrument", "served on", "state", "outcomes", "due")
        for r in rows:
            outcomes = ", ".join(f"{n} {o}" for o, n in r["outcomes"].items())
            due = f"{r['due'][:16]} ({r['time_left']})" if r["due"] else ""
            table.add_row(
                str(r["id"]),
                r["reference"],
                r["instrument"],
                r["served_on"],
                r["state"],
                outcomes,
                due,
            )
        console.print(table)


def _request_step(
    config: Path,
    token: str | None,
    local_step: Any,
    path: str,
    body: dict[str, Any] | None = None,
    method: str = "POST",
) -> dict[str, Any]:
    with acting(
        config,
        token,
        lambda local: _view(local, local_step(local)),
        lambda server: dict(server.call(method, path, json=body)),
    ) as view:
        return view


@request_app.command("show")
def show(
    request_id: RequestId,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """A request's decisions in words, approvals, holds, deadlines and history."""
    view = _request_step(
        config,
        token,
        lambda local: local.desk.view(request_id, local.signer),
        f"/legal/requests/{request_id}",
        method="GET",
    )
    _show(view, as_json)


@request_app.command("approve")
def approve(
    request_id: RequestId,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Approve, signed, as the reviewer you are; a disclosure needs a legal and a security
    reviewer, two different people."""
    view = _request_step(
        config,
        token,
        lambda local: local.desk.approve(request_id, local.signer),
        f"/legal/requests/{request_id}/approve",
    )
    if as_json:
        print_json(view)
        return
    if view["state"] == "in_review":
        console.print(
            f"request {request_id}: approved by {view['approvers'][-1]}; a second person, in the"
            " other reviewer role, must approve",
            highlight=False,
        )
    else:
        console.print(
            f"request {request_id}: {view['state']} by {' and '.join(view['approvers'])}",
            highlight=False,
        )


@request_app.command("reject")
def reject(
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="Why (sent with the refusal).")],
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Reject a request and record the refusal, with each item's ground or lawful route."""
    view = _request_step(
        config,
        token,
        lambda local: local.desk.reject(request_id, local.signer, reason),
        f"/legal/requests/{request_id}/reject",
        {"reason": reason},
    )
    if as_json:
        print_json(view)
    else:
        console.print(f"request {request_id}: {view['state']} ({reason})", highlight=False)


@request_app.command("close")
def close(
    request_id: RequestId,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Close a fulfilled or refused request; notices to affected users are queued (deferred
    while a nondisclosure order is in force)."""
    view = _request_step(
        config,
        token,
        lambda local: local.desk.close(request_id, local.signer),
        f"/legal/requests/{request_id}/close",
    )
    if as_json:
        print_json(view)
    else:
        console.print(f"request {request_id}: closed")


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
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Write the signed disclosure package(s) of an approved request; content keys are
    released through the vault, logged with THIRD_PARTY_DATA_REQUEST and the decision id.
    With a server running, it exports and this downloads the packages into --out."""

    def local(here: Local) -> dict[str, Path]:
        return here.desk.export(
            request_id, out, here.signer, enforcing_state_confirmed=enforcing_state_confirmed
        )

    def remote(server: Remote) -> dict[str, Path]:
        done = server.call(
            "POST",
            f"/legal/requests/{request_id}/export",
            json={"enforcing_state_confirmed": enforcing_state_confirmed},
        )
        return {p["region"]: server.download(p["download"], out) for p in done["packages"]}

    with acting(config, token, local, remote) as folders:
        roster = StaffRoster.of(load(config))
        with open_cloud(config) as cloud, LegalDesk(cloud) as desk:
            checks = {r: trusted_verification(f, desk, roster) for r, f in folders.items()}
        roster.close()
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
    package: Annotated[Path, typer.Argument(help="A disclosure package folder, or its .zip.")],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Trust this Ed25519 key (hex) instead of the region's key in the directory.",
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Recompute every hash, check the signature against the region's key as published in
    the directory (or --key), and the two staff approvals; exit 1 if anything differs."""
    with user_errors():
        trusted = bytes.fromhex(key) if key else None
        if package.suffix == ".zip":
            with unpacked(package) as folder:
                result = _verify_folder(folder, trusted, config)
        else:
            result = _verify_folder(package, trusted, config)
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
        console.print(
            f"{package}: intact, {result.files_checked} files, key {result.public_key},"
            " approved by two reviewers"
        )
    if not result.ok:
        raise fail(f"{package}: " + "; ".join(result.problems))


def _verify_folder(folder: Path, key: bytes | None, config: Path) -> Verification:
    if key is not None and not config.exists():
        return verify_package(folder, [key], "the key given (--key)")
    with open_cloud(config) as cloud, LegalDesk(cloud) as desk:
        roster = StaffRoster.of(cloud.config)
        try:
            return trusted_verification(folder, desk, roster, key)
        finally:
            roster.close()


@request_app.command("notifications")
def notifications(
    due: Annotated[
        str | None, typer.Option(help="Notices due by this date (YYYY-MM-DD; default today).")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every notice, sent or not.")] = False,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """User notices the law now allows and that have not been sent."""
    with user_errors():
        try:
            day = date.fromisoformat(due) if due else datetime.now(UTC).date()
        except ValueError:
            raise ValueError(f"--due: not a date: {due!r}") from None

    def local(here: Local) -> list[dict[str, Any]]:
        rows = (
            here.desk.notifications(here.signer)
            if every
            else here.desk.due_notifications(day, here.signer)
        )
        return [n.to_json() for n in rows]

    params = {"all": "true"} if every else {"due": day.isoformat()}
    with acting(
        config,
        token,
        local,
        lambda server: list(server.call("GET", "/legal/notices", params=params)),
    ) as rows:
        if as_json:
            print_json(rows)
            return
        table = data_table("id", "request", "reference", "account", "due", "sent")
        for n in rows:
            table.add_row(
                str(n["id"]),
                str(n["request"]),
                n["reference"],
                n["account"],
                n["due"],
                n["sent_at"] or "",
            )
        console.print(table)


@request_app.command("notified")
def notified(
    notice_id: Annotated[int, typer.Argument(help="The notice's id (see `notifications`).")],
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Record (signed) that a user notice was sent to the account holder."""
    with acting(
        config,
        token,
        lambda here: here.desk.mark_notified(notice_id, here.signer).to_json(),
        lambda server: dict(server.call("POST", f"/legal/notices/{notice_id}/sent")),
    ) as notice:
        if as_json:
            print_json(notice)
        else:
            console.print(f"notice {notice_id} to {notice['account']}: sent", highlight=False)


@hold_app.command("list")
def list_holds(
    token: TokenOption = None, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False
) -> None:
    """Active preservation holds in your custodian's regions."""
    with acting(
        config,
        token,
        lambda here: [hold_json(r, h) for r, h in here.desk.holds(here.signer)],
        lambda server: list(server.call("GET", "/legal/holds")),
    ) as rows:
        if as_json:
            print_json(rows)
            return
        table = data_table("region", "id", "account", "reference", "until")
        for row in rows:
            table.add_row(*(str(row[k]) for k in ("region", "id", "account", "reference", "until")))
        console.print(table)


HoldId = Annotated[int, typer.Argument(help="The hold's id (see `hold list`).")]
HoldRegion = Annotated[
    str | None, typer.Option("--region", help="The hold's region, if ids repeat.")
]


def _hold_region(server: Remote, hold_id: int, region: str | None) -> str:
    """The region of a hold, which the API's paths name."""
    if region is not None:
        return region
    rows = server.call("GET", "/legal/holds")
    regions = sorted({str(row["region"]) for row in rows if row["id"] == hold_id})
    if len(regions) != 1:
        where = f"exists in {', '.join(regions)}: name one with --region" if regions else ""
        raise RemoteError(f"hold {hold_id} {where or 'is not a live hold (see `hold list`)'}")
    return regions[0]


@hold_app.command("extend")
def extend_hold(
    hold_id: HoldId,
    region: HoldRegion = None,
    until: Annotated[
        str | None,
        typer.Option(help="New end (YYYY-MM-DD or a date-time; default: the legal maximum)."),
    ] = None,
    note: Annotated[
        str, typer.Option(help="The authority's renewed request (recorded in the history).")
    ] = "",
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Extend a preservation hold once, on the authority's renewed request, up to the legal
    maximum (2703(f): 90 + 90 days; EPOC-PR: 60 + 30); a second extension is refused."""
    with user_errors():
        end = _instant("--until", until) if until else None

    def local(here: Local) -> dict[str, Any]:
        rid, new_end, limit = here.desk.extend_hold(hold_id, here.signer, region, end, note)
        return {
            "region": rid,
            "id": hold_id,
            "until": new_end.isoformat(),
            "legal_maximum": limit.isoformat(),
        }

    def remote(server: Remote) -> dict[str, Any]:
        rid = _hold_region(server, hold_id, region)
        body = {"until": end.isoformat() if end else None, "note": note}
        return dict(server.call("POST", f"/legal/holds/{rid}/{hold_id}/extend", json=body))

    with acting(config, token, local, remote) as done:
        if as_json:
            print_json(done)
        else:
            console.print(
                f"hold {hold_id} in {done['region']}: extended to {done['until']}"
                f" (legal maximum {done['legal_maximum']}; no further extension)",
                highlight=False,
            )


@hold_app.command("release")
def release_hold(
    hold_id: HoldId,
    reason: Annotated[str, typer.Option("--reason", help="Why it ends early (recorded).")],
    region: HoldRegion = None,
    token: TokenOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """End a preservation hold before its time (the authority withdrew it)."""

    def remote(server: Remote) -> dict[str, Any]:
        rid = _hold_region(server, hold_id, region)
        body = {"reason": reason}
        return dict(server.call("POST", f"/legal/holds/{rid}/{hold_id}/release", json=body))

    with acting(
        config,
        token,
        lambda here: {
            "region": here.desk.release_hold(hold_id, here.signer, reason, region),
            "id": hold_id,
            "released": True,
        },
        remote,
    ) as done:
        if as_json:
            print_json(done)
        else:
            console.print(f"hold {hold_id} in {done['region']}: released", highlight=False)


def _instant(option: str, text: str) -> datetime:
    """A date (midnight UTC) or a date-time (naive means UTC) given on the command line."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option}: not a date or date-time: {text}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
