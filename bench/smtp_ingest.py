"""SMTP ingest throughput: msg/s, MB/s and server CPU per message over 8 connections,
durable (fsync) commits.

Borderline (`borderline serve`, one region's MX) against a named peer measured in the same
run: stock aiosmtpd with a handler that writes each message to a Maildir and fsyncs it
(what a minimal durable Python MTA does). Server and load generator run in separate
processes; the load generator speaks raw SMTP so it costs as little CPU as possible.

    .venv/bin/python bench/smtp_ingest.py [--messages 4000] [--sizes 20,100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import free_port, serve_example, stop, wait_for_port

CONNECTIONS = 8
ROOT = Path(__file__).resolve().parent.parent
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


def make_message(size: int, index: int) -> bytes:
    head = (
        f"From: load@example.org\r\nTo: alice@example.test\r\nSubject: bench {index}\r\n"
        f"Message-ID: <bench-{index}@example.org>\r\n\r\n"
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


def cpu_seconds(pid: int) -> float:
    """CPU time a server process has used (user and system, from /proc): per message it
    is steadier than msg/s on a shared machine. Extra ingest workers are not counted."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_borderline(workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    server, config = serve_example(
        workdir, "--region", "eu-dublin", "--ingest-workers", str(workers)
    )
    port = config.region("eu-dublin").smtp.port
    wait_for_port(port)
    return server, port


def start_peer(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", PEER_SERVER, str(workdir / "maildir"), str(port)],
        stdout=subprocess.PIPE,
    )
    wait_for_port(port)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sizes", default="20,100", help="message sizes in KB")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"# SMTP ingest, {CONNECTIONS} connections, {os.cpu_count()} cores")
    print(f"{'size':>6} {'server':<28} {'msg/s':>9} {'MB/s':>8} {'CPU ms/msg':>11}")
    for size_kb in (int(s) for s in args.sizes.split(",")):
        size = size_kb * 1024
        count = args.messages if size_kb <= 20 else max(args.messages // 2, 100)
        results = {}
        for name in ("borderline", "aiosmtpd+Maildir+fsync"):
            with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
                if name == "borderline":
                    server, port = start_borderline(Path(tmp), args.workers)
                else:
                    server, port = start_peer(Path(tmp))
                try:
                    load(port, min(200, count), size, "alice@example.test")  # warm-up
                    cpu = cpu_seconds(server.pid)
                    rate, mbps = load(port, count, size, "alice@example.test")
                    cpu = (cpu_seconds(server.pid) - cpu) / count * 1e3
                finally:
                    stop(server)
            results[name] = rate
            print(f"{size_kb:>4}KB {name:<28} {rate:>9.0f} {mbps:>8.1f} {cpu:>11.3f}")
        ratio = results["borderline"] / results["aiosmtpd+Maildir+fsync"]
        print(f"{size_kb:>4}KB ratio borderline / aiosmtpd+Maildir+fsync: {ratio:.2f}x")


if __name__ == "__main__":
    main()
