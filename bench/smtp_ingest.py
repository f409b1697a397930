"""SMTP ingest throughput: msg/s and MB/s over 8 connections, durable commits.

Borderline (`borderline serve`, one region's MX), its store on SQLite and on PostgreSQL (a
throwaway local server), against the stack a provider runs, measured in the same run:
Postfix -> Dovecot LMTP -> Maildir with `mail_fsync = always` (bench/mail_stack.py).
Borderline answers 250 once the message is committed to the mailbox; Postfix once it is in
its queue, and Dovecot delivers it later: the peer's acknowledged rate is Postfix's 250s,
its delivered rate counts files in Maildir/new until the last message is there. Rounds
interleave the three servers (the machine is noisy); medians and ranges are printed. The
load generator runs in its own process and speaks raw SMTP, so it costs little CPU.

    .venv/bin/python bench/smtp_ingest.py [--messages 4000] [--sizes 20,100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mail_stack import MailStack, missing
from processes import serve_example, stop, wait_for_listeners, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.pg import PostgresServer, started_server  # noqa: E402 - the tests' throwaway server

CONNECTIONS = 8
RCPT = "alice@example.test"
WARM_UP = 200


def make_message(
    size: int, index: int, sender: str = "load@example.org", rcpt: str = RCPT
) -> bytes:
    domain = sender.rpartition("@")[2]
    head = (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: bench {index}\r\n"
        f"Message-ID: <bench-{index}@{domain}>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def _connection(port: int, messages: list[bytes], rcpt: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO bench\r\n")
    await _reply(reader)
    for data in messages:
        writer.write(b"MAIL FROM:<load@example.org>\r\n")
        await _reply(reader)
        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        if not (await _reply(reader)).startswith(b"250"):
            raise RuntimeError("recipient refused")
        writer.write(b"DATA\r\n")
        await _reply(reader)
        writer.write(data + b".\r\n")
        reply = await _reply(reader)
        if not reply.startswith(b"250"):
            raise RuntimeError(f"message refused: {reply!r}")
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()


async def send_all(port: int, messages: list[bytes], rcpt: str) -> None:
    """Send the messages over 8 connections, each waiting for every reply."""
    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    await asyncio.gather(*(_connection(port, share, rcpt) for share in shares))


def load(port: int, count: int, size: int, rcpt: str) -> tuple[float, float]:
    """Send `count` messages of `size` bytes over 8 connections; (msg/s, MB/s)."""
    messages = [make_message(size, i) for i in range(count)]
    start = time.perf_counter()
    asyncio.run(send_all(port, messages, rcpt))
    elapsed = time.perf_counter() - start
    total = sum(len(m) for m in messages)
    return count / elapsed, total / elapsed / 1e6


def start_borderline(
    workdir: Path, workers: int, store: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    """`borderline serve` for eu-dublin, its mail in SQLite or in the PostgreSQL `store`."""
    server, config = serve_example(
        workdir,
        "--region",
        "eu-dublin",
        "--ingest-workers",
        str(workers),
        stores={"eu-dublin": store} if store else None,
    )
    port = config.region("eu-dublin").smtp.port
    wait_for_port(port)
    # The workers start after the main process listens; a load that began before they do
    # would be served by the main process alone.
    wait_for_listeners(server, port, workers)
    return server, port


def borderline(workers: int, store: Callable[[], str | None], count: int, size: int) -> float:
    """msg/s committed to the mailbox (each 250 follows the commit)."""
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        server, port = start_borderline(Path(tmp), workers, store())
        try:
            load(port, WARM_UP, size, RCPT)
            return load(port, count, size, RCPT)[0]
        finally:
            stop(server)


def wait_until(done: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("the peer did not deliver every message in time")
        time.sleep(0.01)


def postfix_dovecot(count: int, size: int) -> tuple[float, float]:
    """(msg/s acknowledged by Postfix, msg/s delivered into the Maildir by Dovecot)."""
    user = RCPT.partition("@")[0]
    stack = MailStack(Path(tempfile.mkdtemp(prefix="bench-stack-")), RCPT.partition("@")[2])
    try:
        load(stack.smtp_port, WARM_UP, size, RCPT)
        wait_until(lambda: stack.delivered(user) >= WARM_UP)
        messages = [make_message(size, i) for i in range(count)]
        start = time.perf_counter()
        asyncio.run(send_all(stack.smtp_port, messages, RCPT))
        acknowledged = time.perf_counter() - start
        wait_until(lambda: stack.delivered(user) >= WARM_UP + count)
        delivered = time.perf_counter() - start
        return count / acknowledged, count / delivered
    finally:
        stack.stop()


def spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):>7.0f} ({min(rates):.0f}-{max(rates):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sizes", default="20,100", help="message sizes in KB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    peer_missing = missing()
    postgres = started_server()
    try:
        print(f"# SMTP ingest, {CONNECTIONS} connections, {os.cpu_count()} cores,")
        print(f"# {args.rounds} interleaved rounds: median (range) msg/s")
        if peer_missing:
            print(f"# peer Postfix -> Dovecot LMTP: {peer_missing}; no ratio")
        for size_kb in (int(s) for s in args.sizes.split(",")):
            run_size(args, postgres, size_kb, peer_missing is None)
    finally:
        postgres.stop()


def run_size(args: argparse.Namespace, postgres: PostgresServer, size_kb: int, peer: bool) -> None:
    size = size_kb * 1024
    count = args.messages if size_kb <= 20 else max(args.messages // 2, 100)
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        rates.setdefault("Borderline, SQLite", []).append(
            borderline(args.workers, lambda: None, count, size)
        )
        rates.setdefault("Borderline, PostgreSQL", []).append(
            borderline(args.workers, postgres.create_database, count, size)
        )
        if peer:
            acknowledged, delivered = postfix_dovecot(count, size)
            rates.setdefault("Postfix, acknowledged", []).append(acknowledged)
            rates.setdefault("Postfix -> Dovecot, delivered", []).append(delivered)
    for name, values in rates.items():
        mbps = statistics.median(values) * size / 1e6
        print(f"{size_kb:>4}KB {name:<30} {spread(values)} {mbps:>7.1f} MB/s")
    if peer:
        for ours in ("Borderline, SQLite", "Borderline, PostgreSQL"):
            for theirs in ("Postfix -> Dovecot, delivered", "Postfix, acknowledged"):
                ratios = [a / b for a, b in zip(rates[ours], rates[theirs], strict=True)]
                print(
                    f"{size_kb:>4}KB ratio {ours} / {theirs}: {statistics.median(ratios):.2f}x"
                    f" ({min(ratios):.2f}-{max(ratios):.2f})"
                )


if __name__ == "__main__":
    main()
