"""The `borderline` command tree."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli import accounts, demo
from borderline.cli.common import DEFAULT_CONFIG, ConfigOption, console, fail, open_cloud
from borderline.config import example_config
from borderline.runtime import listeners, serve_forever

app = typer.Typer(
    name="borderline",
    help="Borderline: an email cloud that keeps mail inside its legal boundary.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(accounts.app, name="account")
app.command("demo")(demo.demo)


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve every region (or one) until interrupted."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    with open_cloud(config, region) as cloud:
        for region_id, name, address in listeners(cloud.config, list(cloud.regions)):
            console.print(f"{region_id:<12} {name:<11} {address}")
        console.print("serving; Ctrl-C to stop")
        asyncio.run(serve_forever(cloud))


def main() -> None:
    app()
