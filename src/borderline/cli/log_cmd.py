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
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from borderline.api.witness import create_witness_key, parse_signer_key, witness_dir
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
from borderline.cloud import Cloud, Region
from borderline.report import LogSnapshot, region_verifier_key
from borderline.report.render import RENDERERS
from borderline.report.sources import legal_requests
from borderline.report.transparency import RegionLog, build_report
from borderline.tlog import (
    LogLockedError,
    TlogError,
    TransparencyLog,
    VerifierKey,
    verify_checkpoint,
    verify_consistency,
    verify_receipt,
)
from borderline.tlog.note import COSIGNATURE_V1
from borderline.tlog.proof import format_receipt
from borderline.vault.access import account_hash

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
    """The verified log at its latest checkpoint, signing one first if nobody serves it."""
    if directory is None:
        # Opened only for as long as signing takes, so a starting server is not locked out.
        # If `borderline serve` holds the log, it publishes checkpoints itself.
        with (
            contextlib.suppress(LogLockedError),
            TransparencyLog(region.root / "log", region.origin, region.vault.signing_key) as log,
        ):
            log.checkpoint()
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
    region: RegionOption,
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
    """Verify every tile, entry and reveal offline; with --since, that the log only grew."""
    with open_cloud(config, region) as cloud, user_errors(), log_errors():
        view = snapshot(cloud, cloud.region(region), directory)
        view.revealed()
        result: dict[str, Any] = {
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
    if as_json:
        print_json(result)
        return
    line = f"ok: {result['origin']} size {view.size} root {result['root']}: tiles, entries verified"
    if since is not None:
        line += f"; extends the saved checkpoint of size {result['consistent_since']}"
    console.print(line, highlight=False, soft_wrap=True)


@app.command("witness-key")
def witness_key(
    region: RegionOption,
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example.org/w1.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Create the region's witness key; `serve` then answers add-checkpoint for it."""
    with open_cloud(config, region) as cloud, user_errors():
        try:
            path = create_witness_key(witness_dir(cloud, region), name)
        except FileExistsError as exc:
            raise fail(f"{exc.filename} exists; a witness key is never replaced") from exc
        _, key = parse_signer_key(path.read_text())
    console.print(f"wrote {path}; restart `borderline serve` to start the witness", soft_wrap=True)
    typer.echo(str(VerifierKey.for_key(name, key, COSIGNATURE_V1)))


def access_history(
    address: Annotated[str, typer.Argument(help="The account's mail address.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Show an account's key releases from its home region's log, each with a verified
    inclusion proof, and how many sealed (nondisclosure) accesses that log holds."""
    with open_cloud(config) as cloud, user_errors(), log_errors():
        home = cloud.home_region(address)
        if home is None:
            raise fail(f"no account {address} in the regions served here")
        view = snapshot(cloud, home)
        mine = account_hash(address)
        events = []
        for event in view.events():
            if event.account != mine:
                continue
            receipt = view.receipt(event.index)
            verify_receipt(receipt, view.verifier_key, view.entries[event.index])
            events.append((event, receipt))
        sealed = len(view.sealed_indices())
        revealed = len(view.revealed())
    data = {
        "address": address.lower(),
        "region": home.id,
        "checkpoint": {"origin": view.checkpoint.origin, "size": view.size},
        "root": b64(view.checkpoint.root),
        "events": [
            {
                "index": e.index,
                "time": e.time.isoformat(),
                "justification": e.justification,
                "principal": e.principal,
                "decision": e.decision,
                "revealed_from": e.sealed_index,
                "receipt": receipt.decode(),
            }
            for e, receipt in events
        ],
        "sealed_in_log": sealed,
        "still_sealed_in_log": sealed - revealed,
    }
    if as_json:
        print_json(data)
        return
    table = data_table("#", "time (UTC)", "justification", "principal", "decision", "note")
    for e, _ in events:
        note = f"revealed (sealed at #{e.sealed_index})" if e.sealed_index is not None else ""
        table.add_row(
            str(e.index),
            e.time.strftime("%Y-%m-%d %H:%M:%S"),
            e.justification,
            e.principal,
            e.decision or "",
            note,
        )
    console.print(
        emphasis("", str(data["address"]), f": {len(events)} access event(s) in {home.id}'s log"),
        table,
    )
    console.print(
        f"each inclusion proof verified against checkpoint {view.checkpoint.origin}"
        f" size {view.size} root {data['root']}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"sealed accesses (nondisclosure orders) in this log: {sealed},"
        f" of which still sealed: {sealed - revealed} (they name no account until revealed)"
    )


class ReportFormat(StrEnum):
    html = "html"
    csv = "csv"
    json = "json"


def report(
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], help="First day.")],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day.")],
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.html,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not stdout.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Transparency report: legal requests by country, instrument and outcome, the e-Evidence
    Art. 28 breakdown, key releases and sealed accesses, at verified log checkpoints."""
    with open_cloud(config) as cloud, user_errors(), log_errors():
        first, last = start.date(), end.date()
        logs = [
            RegionLog.from_snapshot(r.id, snapshot(cloud, r), first, last)
            for r in cloud.regions.values()
        ]
        built = build_report(
            legal_requests(cloud.config.cloud.data_dir), logs, first, last, cloud.config.cloud.name
        )
        text = RENDERERS[fmt.value](built)
        if out is not None:
            out.write_text(text, encoding="utf-8")
    if out is None:
        sys.stdout.write(text)
    else:
        sizes = ", ".join(f"{log.region} at size {log.size}" for log in logs)
        console.print(f"wrote {out} ({fmt.value}); logs: {sizes}", highlight=False)
