"""`borderline log checkpoint|prove|verify|witness-key` and `borderline access-history`.

Everything is read from the files a region publishes (checkpoint, tiles, entry bundles) and
verified before it is shown, so these commands work while `borderline serve` holds the log,
and `log verify --dir` works on a copy fetched from anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    USER_ERRORS,
    ConfigOption,
    JsonOption,
    console,
    data_table,
    emphasis,
    err_console,
    fail,
    open_cloud,
    print_json,
    user_errors,
)
from borderline.cloud import Cloud, Region
from borderline.report import LogEvent, LogSnapshot, region_verifier_key
from borderline.tlog import (
    LogLockedError,
    TlogError,
    VerificationError,
    VerifierKey,
    verify_checkpoint,
    verify_consistency,
    verify_receipt,
)
from borderline.tlog.proof import format_receipt
from borderline.tlog.witnesskey import create_witness_key
from borderline.vault import AccessRecord
from borderline.vault.access import account_hash
from borderline.witnessing import WitnessPublisher

app = typer.Typer(help="The regions' transparency logs: checkpoints, proofs, verification.")

RegionOption = Annotated[str, typer.Option("--region", "-r", help="Region id.")]


@contextmanager
def log_errors() -> Iterator[None]:
    """A proof or signature that does not verify is a one-line reason and exit status 1."""
    try:
        yield
    except (TlogError, IndexError) as exc:
        raise fail(str(exc)) from exc


def verifier_key(cloud: Cloud, region: Region) -> VerifierKey:
    """From the directory's published key, as an outside verifier would get it."""
    return region_verifier_key(region.origin, cloud.directory.region_keys(region.id).signing_key)


def snapshot(cloud: Cloud, region: Region, directory: Path | None = None) -> LogSnapshot:
    """The verified log at its published checkpoint, signing (and having witnesses cosign)
    a fresh one first if nobody serves the log."""
    if directory is None:
        # Opened only for as long as signing takes, so a starting server is not locked out.
        # If `borderline serve` holds the log, it publishes checkpoints itself.
        with (
            contextlib.suppress(LogLockedError),
            region.new_log(region.vault.signing_key) as log,
        ):
            log.checkpoint()
            if region.section.witnesses:
                publisher = WitnessPublisher(region.section.witnesses, region.origin)
                try:
                    for problem in publisher.push(log):
                        err_console.print(f"warning: {problem}")
                finally:
                    publisher.close()
        directory = region.root / "log"
    return LogSnapshot.load(directory, verifier_key(cloud, region))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@app.command("checkpoint")
def checkpoint(
    region: Annotated[
        str | None, typer.Option("--region", "-r", help="Only this region (prints the note).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Print the signed checkpoint of a region's log (all regions' sizes without --region)."""
    with open_cloud(config, region) as cloud, user_errors(), log_errors():
        rows: list[dict[str, Any]] = []
        for r in cloud.regions.values():
            view = snapshot(cloud, r)
            rows.append(
                {
                    "region": r.id,
                    "origin": view.checkpoint.origin,
                    "size": view.size,
                    "root": b64(view.checkpoint.root),
                    "verifier_key": str(view.verifier_key),
                    "note": view.note.decode(),
                }
            )
    if as_json:
        print_json(rows if region is None else rows[0])
    elif region is not None:
        sys.stdout.write(rows[0]["note"])
    else:
        table = data_table("region", "origin", "size", "root")
        for row in rows:
            table.add_row(row["region"], row["origin"], str(row["size"]), row["root"])
        console.print(table)


@app.command("prove")
def prove(
    region: RegionOption,
    index: Annotated[int, typer.Option("--index", "-i", min=0, help="Entry index.")],
    size: Annotated[
        int | None,
        typer.Option(help="Tree size to prove against (the latest or --checkpoint's)."),
    ] = None,
    saved: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="A saved signed checkpoint (perhaps cosigned) to prove against."
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Print a C2SP tlog-proof receipt that entry INDEX is in the region's log."""
    with open_cloud(config, region) as cloud, user_errors(), log_errors():
        view = snapshot(cloud, cloud.region(region))
        note = view.note if saved is None else saved.read_bytes()
        target = verify_checkpoint(note, view.verifier_key)
        if target.size > view.size or view.tree.root(target.size) != target.root:
            raise fail(f"{saved} is not a checkpoint of this log's history")
        if size is not None and size != target.size:
            raise fail(
                f"no signed checkpoint of size {size} at hand (this one has {target.size});"
                " pass one saved earlier with --checkpoint"
            )
        if index >= target.size:
            raise fail(f"entry {index} is not under the checkpoint of size {target.size}")
        receipt = format_receipt(index, view.tree.inclusion_proof(index, target.size), note)
        verify_receipt(receipt, view.verifier_key, view.entries[index])
    sys.stdout.write(receipt.decode())


@app.command("verify")
def verify(
    region: Annotated[
        str | None, typer.Option("--region", "-r", help="Only this region (all by default).")
    ] = None,
    since: Annotated[
        Path | None,
        typer.Option(help="A checkpoint saved earlier: prove the log only grew since."),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Verify this copy of the log (e.g. fetched over HTTP)."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Verify every tile, entry and reveal offline, of every region's log (or one's); with
    --since, that the log only grew. A line per region; exit status 1 if any fails."""
    if region is None and (since is not None or directory is not None):
        raise fail("--since and --dir are one region's: name it with --region")
    results: list[dict[str, Any]] = []
    with open_cloud(config, region) as cloud:
        for served in cloud.regions.values():
            try:
                results.append(_verified(cloud, served, since, directory))
            except (TlogError, IndexError, *USER_ERRORS) as exc:
                results.append({"region": served.id, "ok": False, "error": str(exc)})
    if as_json:
        print_json(results if region is None else results[0])
    else:
        for result in results:
            if result["ok"]:
                console.print(_verified_line(result), highlight=False, soft_wrap=True)
    failed = [f"{r['region']}: {r['error']}" for r in results if not r["ok"]]
    if failed:
        raise fail("; ".join(failed))


def _verified(
    cloud: Cloud, region: Region, since: Path | None, directory: Path | None
) -> dict[str, Any]:
    view = snapshot(cloud, region, directory)
    view.revealed()
    result: dict[str, Any] = {
        "region": region.id,
        "ok": True,
        "origin": view.checkpoint.origin,
        "size": view.size,
        "root": b64(view.checkpoint.root),
    }
    if since is not None:
        old = verify_checkpoint(since.read_bytes(), view.verifier_key)
        if old.size > view.size:
            raise fail(f"the saved checkpoint ({old.size}) is newer than the log ({view.size})")
        proof = view.tree.consistency_proof(old.size, view.size)
        verify_consistency(old.size, view.size, old.root, view.checkpoint.root, proof)
        result["consistent_since"] = old.size
    return result


def _verified_line(result: dict[str, Any]) -> str:
    line = f"ok: {result['origin']} size {result['size']} root {result['root']}"
    line += ": tiles, entries verified"
    if "consistent_since" in result:
        line += f"; extends the saved checkpoint of size {result['consistent_since']}"
    return line


@app.command("witness-key")
def witness_key(
    region: RegionOption,
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example.org/w1.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Create the region's witness key; `serve` then answers add-checkpoint for it."""
    with open_cloud(config, region) as cloud, user_errors():
        directory = cloud.region(region).witness_dir
        try:
            vkey = create_witness_key(directory, name)
        except FileExistsError as exc:
            raise fail(f"{exc.filename} exists; a witness key is never replaced") from exc
    console.print(
        f"wrote {directory}; restart `borderline serve` to start the witness", soft_wrap=True
    )
    typer.echo(vkey)


def _event_row(event: LogEvent, receipt: bytes, private: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "index": event.index,
        "format": 1 if event.format1 else 2,
        "time": event.time.isoformat(),
        "justification": event.justification,
        "request": event.request,
        "revealed_from": event.sealed_index,
        "commitment": event.commitment,
        "private": private,
        "receipt": receipt.decode(),
    }


def account_history(view: LogSnapshot, address: str, records: list[AccessRecord]) -> dict[str, Any]:
    """Match the account's private records to the log by commitment, open each one and
    verify the inclusion proof of its entry; format-1 entries are found by the hash they
    published."""
    by_commitment = {e.commitment: e for e in view.events() if e.commitment}
    legacy = account_hash(address)
    rows, pending = [], []
    for record in records:
        event = by_commitment.get(record.commitment)
        if event is None:
            pending.append({"commitment": record.commitment, "private": record.fields})
            continue
        if not record.opens():
            raise VerificationError(f"the private record of entry {event.index} does not open")
        receipt = view.receipt(event.index)
        verify_receipt(receipt, view.verifier_key, view.entries[event.index])
        rows.append(_event_row(event, receipt, record.fields))
    for event in view.events():
        if event.format1 is not None and event.format1.account == legacy:
            receipt = view.receipt(event.index)
            verify_receipt(receipt, view.verifier_key, view.entries[event.index])
            principal = {"principal": event.format1.principal, "published": True}
            rows.append(_event_row(event, receipt, principal))
    rows.sort(key=lambda r: r["index"])
    sealed = len(view.sealed_indices())
    return {
        "address": address,
        "checkpoint": {"origin": view.checkpoint.origin, "size": view.size},
        "root": b64(view.checkpoint.root),
        "events": rows,
        "pending": pending,
        "sealed_in_log": sealed,
        "still_sealed_in_log": sealed - len(view.revealed()),
    }


def access_history(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="BORDERLINE_PASSWORD",
            help="The account's password: only its holder opens its access records.",
        ),
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Show an account's accesses: each private record opened, its commitment matched to an
    entry of the home region's log and that entry's inclusion proof verified."""
    with open_cloud(config) as cloud, user_errors(), log_errors():
        home = cloud.home_region(address)
        if home is None or not home.check_password(address.lower(), password):
            raise fail(f"no account {address} here, or the password is wrong")
        view = snapshot(cloud, home)
        records = home.vault.access_records(address, datetime.now(UTC).date())
        data = {**account_history(view, address.lower(), records), "region": home.id}
    if as_json:
        print_json(data)
        return
    _print_history(data)


def _print_history(data: dict[str, Any]) -> None:
    table = data_table("#", "time (UTC)", "justification", "principal", "request", "note")
    for e in data["events"]:
        private = e["private"] or {}
        notes = []
        if e["revealed_from"] is not None:
            notes.append(f"revealed (sealed at #{e['revealed_from']})")
        if e["format"] == 1:
            notes.append("format 1: published in clear")
        table.add_row(
            str(e["index"]),
            str(private.get("time", e["time"])).replace("T", " ")[:19],
            e["justification"],
            str(private.get("principal", "")),
            str(e["request"] or ""),
            "; ".join(notes),
        )
    console.print(
        emphasis(
            "",
            str(data["address"]),
            f": {len(data['events'])} access event(s) in {data['region']}'s log",
        ),
        table,
    )
    checkpoint = data["checkpoint"]
    console.print(
        f"each record opened its commitment, and each entry's inclusion proof verified against"
        f" checkpoint {checkpoint['origin']} size {checkpoint['size']} root {data['root']}",
        highlight=False,
        soft_wrap=True,
    )
    if data["pending"]:
        console.print(
            f"{len(data['pending'])} more record(s) not yet under the published checkpoint",
            highlight=False,
        )
    console.print(
        f"sealed accesses (nondisclosure orders) in this log: {data['sealed_in_log']},"
        f" of which still sealed: {data['still_sealed_in_log']} (they name no account)"
    )
