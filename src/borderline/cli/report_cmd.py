"""`borderline report` (write a signed transparency report) and `borderline report verify`."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    console,
    fail,
    open_cloud,
    user_errors,
)
from borderline.cli.log_cmd import b64, log_errors, snapshot, verifier_key
from borderline.report.render import RENDERERS
from borderline.report.signature import sign_report, signed_text, verify_report
from borderline.report.sources import legal_requests, names
from borderline.report.transparency import RegionLog, build_report
from borderline.tlog import VerificationError, VerifierKey

app = typer.Typer(
    help="Transparency reports: write one (signed by every region), or verify one.",
    invoke_without_command=True,
)


class ReportFormat(StrEnum):
    html = "html"
    csv = "csv"
    json = "json"


@app.callback()
def report(
    ctx: typer.Context,
    start: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First day.")
    ] = None,
    end: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day.")
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.html,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here, not stdout.")] = None,
    signature: Annotated[
        Path | None,
        typer.Option(help="Write the signature here (default with --out: OUT.sig)."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Requests and accounts by country, instrument, outcome and where the data sat, the
    trend by half-year, key releases from the logs; signed by each region's key."""
    if ctx.invoked_subcommand is not None:
        return
    if start is None or end is None:
        raise fail("give the period: --from YYYY-MM-DD --to YYYY-MM-DD")
    with open_cloud(config) as cloud, user_errors(), log_errors():
        first, last = start.date(), end.date()
        logs = [
            RegionLog.from_snapshot(r.id, snapshot(cloud, r), first, last)
            for r in cloud.regions.values()
        ]
        built = build_report(
            legal_requests(cloud.config.cloud.data_dir),
            logs,
            first,
            last,
            cloud.config.cloud.name,
            names=names(cloud.config),
        )
        data = RENDERERS[fmt.value](built).encode()
        signers = [(r.origin, r.vault.signing_key) for r in cloud.regions.values()]
        note = sign_report(signed_text(data, fmt.value, built), signers)
        signature = signature or (out.with_name(out.name + ".sig") if out else None)
        if out is not None:
            out.write_bytes(data)
        if signature is not None:
            signature.write_bytes(note)
    if out is None:
        sys.stdout.buffer.write(data)
        return
    sizes = ", ".join(f"{log.region} at size {log.size}" for log in logs)
    console.print(
        f"wrote {out} ({fmt.value}) and its signature {signature}; logs: {sizes}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The published report file.")],
    signature: Annotated[
        Path | None, typer.Option(help="Its signature file (default: PATH.sig).")
    ] = None,
    keys: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            help="A region's log verifier key (repeatable); without it, the config's regions,"
            " and each checkpoint is also checked against that region's log.",
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Check a report: its hash, a signature by every region it covers, and that each
    checkpoint it was computed at is in that region's log history."""
    signature = signature or path.with_name(path.name + ".sig")
    with user_errors(), log_errors():
        data, note = path.read_bytes(), signature.read_bytes()
        if keys:
            signed = verify_report(data, note, [VerifierKey.parse(k) for k in keys])
            checked = "not checked against the logs (no config)"
        else:
            with open_cloud(config) as cloud:
                by_origin = {r.origin: r for r in cloud.regions.values()}
                trusted = [verifier_key(cloud, r) for r in cloud.regions.values()]
                signed = verify_report(data, note, trusted)
                for checkpoint in signed.checkpoints:
                    view = snapshot(cloud, by_origin[checkpoint.origin])
                    if (
                        checkpoint.size > view.size
                        or view.tree.root(checkpoint.size) != checkpoint.root
                    ):
                        raise VerificationError(
                            f"{checkpoint.origin}: the report's checkpoint of size"
                            f" {checkpoint.size} is not in the log's history"
                        )
            checked = "each in its log's history"
    regions = ", ".join(f"{c.origin} size {c.size} root {b64(c.root)}" for c in signed.checkpoints)
    console.print(
        f"ok: {path} ({signed.fmt}, {signed.start} to {signed.end}) matches its hash and is"
        f" signed by every region it covers; checkpoints {checked}: {regions}",
        highlight=False,
        soft_wrap=True,
    )
