"""SMTP memory per message: how much a server's peak RSS grows per byte of mail it receives.

Borderline (`borderline serve`, both regions in one process) receives big messages over
real SMTP, for a recipient homed where the message arrives (encrypted into the store) and
for one homed in the other region (sealed, queued, relayed); then the relayed path again
with each region in its own process (`serve --region`, as in scale-out), measured in each.
The figure is the growth of the server's peak RSS (VmHWM, from /proc) over its value after
a warm-up, divided by the bytes sent at once; "kept" is what the process still holds
(VmRSS) afterwards. Peer, same run: stock aiosmtpd writing each message to a Maildir (what a
minimal Python MTA holds).

Each store engine is measured: SQLite, and PostgreSQL (a throwaway local server, a
database per region and run).

    .venv/bin/python bench/smtp_memory.py [--size-mb 24] [--parallel 1,10]
        [--engines sqlite,postgresql] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from processes import free_port, serve_example, stop, wait_for_port
from smtp_ingest import PostgresServer, make_message, started_server

CHUNK = 1 << 20
# (region sent to, one process per region, a label per process)
PATHS = [
    ("eu-dublin", False, ["home region"]),
    ("us-east", False, ["sealed and relayed home"]),
    ("us-east", True, ["sealed, accepting region alone", "relayed, home region alone"]),
]
# The peer: stock aiosmtpd writing each message to a Maildir with fsync.
PEER_SERVER = r"""
import asyncio, mailbox, os, sys
from aiosmtpd.smtp import SMTP

class MaildirFsync:
    def __init__(self, path):
        self.box = mailbox.Maildir(path, create=True)
        self.new = os.path.join(path, "new")
    async def handle_DATA(self, server, session, envelope):
        def write():
            key = self.box.add(envelope.original_content)
            fd = os.open(os.path.join(self.new, key), os.O_RDONLY)
            os.fsync(fd); os.close(fd)
            dfd = os.open(self.new, os.O_RDONLY); os.fsync(dfd); os.close(dfd)
        await asyncio.get_running_loop().run_in_executor(None, write)
        return "250 OK"

async def main():
    handler = MaildirFsync(sys.argv[1])
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, data_size_limit=None), "127.0.0.1", int(sys.argv[2]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def start_peer(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", PEER_SERVER, str(workdir / "maildir"), str(port)],
        stdout=subprocess.PIPE,
    )
    wait_for_port(port)
    return server, port


def _status(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def _send(port: int, rcpt: str, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    for command in (b"EHLO bench", b"MAIL FROM:<load@example.org>", f"RCPT TO:<{rcpt}>".encode()):
        writer.write(command + b"\r\n")
        if not (await _reply(reader)).startswith(b"250"):
            raise RuntimeError(f"{command!r} refused")
    writer.write(b"DATA\r\n")
    await _reply(reader)
    for start in range(0, len(data), CHUNK):
        writer.write(data[start : start + CHUNK])
        await writer.drain()
    writer.write(b".\r\n")
    reply = await _reply(reader)
    if not reply.startswith(b"250"):
        raise RuntimeError(f"message refused: {reply!r}")
    writer.write(b"QUIT\r\n")
    writer.close()


def measure(
    pids: list[int], port: int, size: int, parallel: int, settled: Callable[[], bool]
) -> list[tuple[float, float]]:
    """Per process: (peak RSS growth, RSS kept afterwards), each per byte sent."""
    asyncio.run(_send(port, "alice@example.test", make_message(64 * 1024, 0)))  # warm-up
    while not settled():
        time.sleep(0.1)
    time.sleep(0.5)
    before = [_status(pid, "VmHWM") for pid in pids]
    messages = [make_message(size, i) for i in range(parallel)]

    async def send_all() -> None:
        await asyncio.gather(*(_send(port, "alice@example.test", m) for m in messages))

    asyncio.run(send_all())
    while not settled():  # the relay, if any, has delivered
        time.sleep(0.1)
    time.sleep(1)
    sent = sum(len(m) for m in messages)
    return [
        ((_status(pid, "VmHWM") - base) / sent, (_status(pid, "VmRSS") - base) / sent)
        for pid, base in zip(pids, before, strict=True)
    ]


def relays_settled(config_path: Path) -> bool:
    from borderline.cloud import Cloud
    from borderline.config import load_config

    with Cloud(load_config(config_path), only="us-east") as cloud:
        return cloud.region("us-east").store.queued_relays() == 0


def start_borderline(
    workdir: Path, size: int, split: bool, stores: dict[str, str] | None
) -> tuple[list[subprocess.Popen[bytes]], dict[str, int]]:
    """Both regions in one process, or (`split`) us-east's process, then eu-dublin's."""
    # Room for the sealed relay envelope too, which older versions held to the same limit.
    region = ("--region", "us-east") if split else ()
    server, config = serve_example(workdir, *region, max_message_size=size * 3 // 2, stores=stores)
    servers = [server]
    if split:
        command = [
            sys.executable,
            "-m",
            "borderline",
            "serve",
            "-c",
            str(workdir / "borderline.toml"),
        ]
        servers.append(
            subprocess.Popen([*command, "--region", "eu-dublin"], stdout=subprocess.DEVNULL)
        )
    ports = {r: config.region(r).smtp.port for r in ("eu-dublin", "us-east")}
    for port in ports.values():
        wait_for_port(port)
    return servers, ports


def measure_borderline(
    size: int, parallel: int, engine: str, postgres: PostgresServer | None
) -> dict[str, tuple[float, float]]:
    """Each path's figures, by "<engine>, <label>"."""
    figures = {}
    for region, split, labels in PATHS:
        stores = None
        if postgres is not None:
            stores = {r: postgres.create_database() for r in ("eu-dublin", "us-east")}
        with tempfile.TemporaryDirectory(prefix="bench-smtp-mem-") as tmp:
            servers, ports = start_borderline(Path(tmp), size, split, stores)
            config_path = Path(tmp) / "borderline.toml"
            try:
                measured = measure(
                    [server.pid for server in servers],
                    ports[region],
                    size,
                    parallel,
                    partial(relays_settled, config_path),
                )
            finally:
                for server in servers:
                    stop(server)
        for label, figure in zip(labels, measured, strict=True):
            figures[f"{engine}, {label}"] = figure
    return figures


def measure_peer(size: int, parallel: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-smtp-mem-") as tmp:
        server, port = start_peer(Path(tmp))
        try:
            [figure] = measure([server.pid], port, size, parallel, lambda: True)
        finally:
            stop(server)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=24)
    parser.add_argument("--parallel", default="1,10", help="messages sent at once")
    parser.add_argument("--engines", default="sqlite,postgresql", help="the stores measured")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    engines = args.engines.split(",")
    postgres = started_server() if "postgresql" in engines else None
    try:
        print(f"# SMTP memory, {args.size_mb} MB messages; peak RSS growth / bytes sent")
        print(f"# {args.rounds} interleaved rounds: median (range); kept afterwards: median")
        print(f"{'at once':>7} {'server and path':<56} {'peak':>18} {'kept':>6}")
        for parallel in (int(p) for p in args.parallel.split(",")):
            runs: dict[str, list[tuple[float, float]]] = {}
            for _ in range(args.rounds):
                for engine in engines:
                    chosen = postgres if engine == "postgresql" else None
                    for name, figure in measure_borderline(size, parallel, engine, chosen).items():
                        runs.setdefault(f"borderline, {name}", []).append(figure)
                runs.setdefault("aiosmtpd+Maildir", []).append(measure_peer(size, parallel))
            for name, figures in runs.items():
                peaks = [peak for peak, _ in figures]
                kept = statistics.median(k for _, k in figures)
                print(f"{parallel:>7} {name:<56} {spread(peaks):>18} {kept:>5.2f}x")
    finally:
        if postgres is not None:
            postgres.stop()


def spread(values: list[float]) -> str:
    """Median (range) of multiples of the bytes sent."""
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
