"""`borderline witness key|serve`: a standalone C2SP tlog-witness for other operators' logs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from borderline.cli.common import console, fail, user_errors
from borderline.config import Listen
from borderline.runtime import serve_witness
from borderline.tlog import TlogError, VerifierKey
from borderline.tlog.witnesskey import STATE_FILE, create_witness_key, open_witness

app = typer.Typer(help="A standalone witness: cosigns other operators' log checkpoints.")

DirOption = Annotated[
    Path, typer.Option("--dir", help="Holds the witness key and its state (one per log).")
]


@app.command("key")
def key(
    directory: DirOption,
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example.org/w1.")],
) -> None:
    """Create the witness key (mode 0600, never replaced); prints its cosignature key."""
    with user_errors():
        try:
            vkey = create_witness_key(directory, name)
        except FileExistsError as exc:
            raise fail(f"{exc.filename} exists; a witness key is never replaced") from exc
    typer.echo(vkey)


@app.command("serve")
def serve(
    directory: DirOption,
    logs: Annotated[
        list[str],
        typer.Option("--log", help="A log's verifier key <origin>+<id>+<key> (repeatable)."),
    ],
    listen: Annotated[str, typer.Option(help="host:port to listen on.")] = "127.0.0.1:8081",
) -> None:
    """Serve POST /add-checkpoint and GET /<sha256(origin)>/checkpoint until interrupted."""
    with user_errors():
        try:
            keys = {k.name: k for k in map(VerifierKey.parse, logs)}
        except TlogError as exc:
            raise fail(f"--log: {exc}") from exc
        address = Listen.parse(listen)
        witness = open_witness(directory, dict(keys))
        if witness is None:
            raise fail(f"no witness key in {directory}: run `borderline witness key` first")
    console.print(
        f"witness {witness.name} on http://{address}, cosigning {len(keys)} log(s); state in"
        f" {directory / STATE_FILE}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(witness.verifier_key(), highlight=False, soft_wrap=True)
    asyncio.run(serve_witness(witness, address))
