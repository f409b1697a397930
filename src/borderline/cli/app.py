"""The `borderline` command tree."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli import accounts, demo, legal_cmd, log_cmd, report_cmd, witness_cmd
from borderline.cli.common import DEFAULT_CONFIG, ConfigOption, console, fail, open_cloud
from borderline.config import example_config
from borderline.runtime import listeners, serve_forever
from borderline.tlog import CorruptLogError

app = typer.Typer(
    name="borderline",
    help="Borderline: an email cloud that keeps mail inside its legal boundary.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(accounts.app, name="account")
app.add_typer(legal_cmd.request_app, name="request")
app.add_typer(legal_cmd.hold_app, name="hold")
app.add_typer(legal_cmd.law_app, name="law")
app.command("demo")(demo.demo)
app.add_typer(log_cmd.app, name="log")
app.command("access-history")(log_cmd.access_history)
app.add_typer(report_cmd.app, name="report")
app.add_typer(witness_cmd.app, name="witness")


@app.command()
def init(
    config: ConfigOption = DEFAULT_CONFIG,
    data_dir: Annotated[
        Path, typer.Option(help="Where regions keep their data (relative to the config).")
    ] = Path("data"),
    base_port: Annotated[int, typer.Option(help="Listeners use ports from here up.")] = 2500,
    force: Annotated[bool, typer.Option(help="Overwrite an existing config.")] = False,
) -> None:
    """Write a working two-region example: us-east (US custodian), eu-dublin (Irish custodian)."""
    if config.exists() and not force:
        raise fail(f"{config} exists; use --force to overwrite it")
    config.write_text(example_config(data_dir, base_port=base_port), encoding="utf-8")
    console.print(f"wrote {config}; next: borderline account add ADDRESS --region eu-dublin")


@app.command()
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    region: Annotated[
        str | None, typer.Option("--region", "-r", help="Serve only this region (scale-out).")
    ] = None,
    ingest_workers: Annotated[
        int, typer.Option(min=1, help="Processes accepting SMTP on the MX ports (SO_REUSEPORT).")
    ] = 1,
    ingest_only: Annotated[bool, typer.Option(hidden=True)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve every region (or one) until interrupted."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    shared_port = ingest_workers > 1 or ingest_only
    with open_cloud(config, region) as cloud:
        # Workers start once this process has created any missing keys and databases.
        workers = [] if ingest_only else _spawn_ingest_workers(config, region, ingest_workers - 1)
        try:
            if not ingest_only:
                for region_id, name, address in listeners(cloud):
                    console.print(f"{region_id:<12} {name:<11} {address}")
                console.print(f"serving with {ingest_workers} ingest process(es); Ctrl-C to stop")
            try:
                asyncio.run(serve_forever(cloud, ingest_only, reuse_port=shared_port))
            except CorruptLogError as exc:
                raise fail(f"not starting: {exc}") from exc
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(10)


def _spawn_ingest_workers(
    config: Path, region: str | None, count: int
) -> list[subprocess.Popen[bytes]]:
    """Extra processes accepting MX mail on the same ports: SMTP parsing is CPU-bound and
    one Python process cannot use a second core. They share the region's database."""
    command = [sys.executable, "-m", "borderline", "serve", "-c", str(config), "--ingest-only"]
    if region is not None:
        command += ["--region", region]
    return [subprocess.Popen(command) for _ in range(count)]


def main() -> None:
    app()
