"""The `borderline` command tree."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from borderline import observe
from borderline.cli import (
    accounts,
    alias_cmd,
    demo,
    legal_cmd,
    log_cmd,
    mail_cmd,
    queue_cmd,
    report_cmd,
    staff_cmd,
    witness_cmd,
)
from borderline.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    console,
    fail,
    open_cloud,
    user_errors,
)
from borderline.cli.malloc import return_big_buffers
from borderline.config import example_config
from borderline.notices import NoticeReceiver, NoticeSender
from borderline.observe import LogFormat
from borderline.tlog import CorruptLogError

app = typer.Typer(
    name="borderline",
    help="Borderline: an email cloud that keeps mail inside its legal boundary.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.add_typer(accounts.app, name="account")
app.add_typer(alias_cmd.app, name="alias")
app.add_typer(legal_cmd.request_app, name="request")
app.add_typer(legal_cmd.hold_app, name="hold")
app.add_typer(legal_cmd.law_app, name="law")
app.add_typer(staff_cmd.app, name="staff")
app.command("demo")(demo.demo)
app.add_typer(log_cmd.app, name="log")
app.add_typer(queue_cmd.app, name="queue")
app.command("access-history")(log_cmd.access_history)
app.add_typer(report_cmd.app, name="report")
app.add_typer(witness_cmd.app, name="witness")
app.add_typer(mail_cmd.dkim_app, name="dkim")
app.command("dns")(mail_cmd.dns)


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
    notices_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log at INFO: one line per event.")
    ] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(help="text (default) or json: one JSON object per line, on stderr."),
    ] = None,
) -> None:
    """Serve every region (or one) until SIGINT or SIGTERM; SIGHUP reloads TLS certificates,
    account homes and the log level and format.

    Exit status: 0 after a clean stop; 1 if it cannot start (bad config, a port in use, the
    region already served by another process), with the reason on one line.
    """
    # Imported here, as in `demo`: only the commands that serve load every server.
    from borderline.runtime import ServeError, run_lock, serve_forever

    return_big_buffers()
    shared_port = ingest_workers > 1 or ingest_only
    observe.pin("info" if verbose else None, log_format)
    with open_cloud(config, region) as cloud:
        observe.configure_logging(cloud.config.log.level, cloud.config.log.format)
        lock = contextlib.nullcontext() if ingest_only else run_lock(cloud)
        with user_errors(ServeError), lock:
            # Workers start once this process has created any missing keys and databases.
            extra_workers = 0 if ingest_only else ingest_workers - 1
            log_options = ["-v"] * verbose + (["--log-format", log_format] if log_format else [])
            # Workers tell this process which mailboxes they delivered to (borderline.notices).
            notices: NoticeReceiver | NoticeSender | None = None
            if notices_fd is not None:
                notices = NoticeSender(notices_fd)
            elif extra_workers:
                notices = NoticeReceiver()
            workers = _spawn_ingest_workers(config, region, extra_workers, log_options, notices)
            try:
                asyncio.run(
                    serve_forever(
                        cloud,
                        ingest_only,
                        reuse_port=shared_port,
                        config_path=config,
                        announce=console.print,
                        notices=notices,
                    )
                )
            except CorruptLogError as exc:
                raise fail(f"not starting: {exc}") from exc
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(10)
                if notices is not None:
                    notices.close()


def _spawn_ingest_workers(
    config: Path,
    region: str | None,
    count: int,
    options: list[str],
    notices: NoticeReceiver | NoticeSender | None,
) -> list[subprocess.Popen[bytes]]:
    """Extra processes accepting MX mail on the same ports: SMTP parsing is CPU-bound and
    one Python process cannot use a second core. They share the region's database."""
    command = [
        *(sys.executable, "-m", "borderline", "serve", "-c", str(config), "--ingest-only"),
        *options,
    ]
    if region is not None:
        command += ["--region", region]
    if not isinstance(notices, NoticeReceiver):
        return [subprocess.Popen(command) for _ in range(count)]
    fd = notices.worker_fd
    return [
        subprocess.Popen([*command, "--notices-fd", str(fd)], pass_fds=(fd,)) for _ in range(count)
    ]


def exit_on_terminate() -> None:
    """SIGTERM ends a command as Ctrl-C does, through its cleanup (an interrupted export
    removes its plaintext staging folder) instead of stopping the process where it stands.
    `serve` installs its own handlers in its event loop."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


def main() -> None:
    exit_on_terminate()
    app()
