"""IMAP bulk fetch: `UID FETCH 1:* BODY.PEEK[]` and `UID FETCH 1:* ENVELOPE` rates.

Borderline (`borderline serve --region eu-dublin`, its own process) against a named peer
measured in the same run on the same messages: Dovecot 2.3 (Debian's dovecot-imapd) started
as a throwaway instance on a loopback port with a Maildir prefilled with the same files.
Each measure is the best of several rounds, each round on a new connection: Borderline
decrypts and parses on every session (it caches nothing across sessions, by design), while
Dovecot answers ENVELOPE from its index cache after the first round. Also printed: the same
work in-process without IMAP (read blob, AES-GCM decrypt, parse the envelope), the ceiling
for the server.

    .venv/bin/python bench/imap_fetch.py [--messages 3000] [--size 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dovecot_imap
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from borderline.imap.mime import Part, envelope
from borderline.vault import Justification
from processes import free_port, stop, wait_for_port

ADDRESS = "bench@example.test"
PASSWORD = "bench password"
ROOT = Path(__file__).resolve().parent.parent


def make_message(index: int, size: int) -> bytes:
    header = (
        f"From: Sender {index} <sender{index}@example.org>\r\n"
        f"To: Bench <{ADDRESS}>\r\nCc: Other <other@example.org>\r\n"
        f"Subject: benchmark message {index}\r\n"
        "Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench{index}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = f"line of message {index} padded with some text to look like mail.\r\n".encode()
    body = (line * (size // len(line) + 1))[: max(0, size - len(header))]
    return header + body


class Client:
    """A raw IMAP client that only frames responses, so the server is what is measured."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.counter = 0
        self.read_until(b"\r\n")
        self.command(f'LOGIN "{user}" "{password}"'.encode())
        self.command(b"SELECT INBOX")

    def read_until(self, end: bytes) -> bytes:
        start = 0
        while True:
            found = self.buffer.find(end, start)
            if found >= 0:
                data = bytes(self.buffer[: found + len(end)])
                del self.buffer[: found + len(end)]
                return data
            start = max(0, len(self.buffer) - len(end) + 1)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk

    def command(self, text: bytes) -> bytes:
        self.counter += 1
        tag = b"b%d" % self.counter
        self.sock.sendall(tag + b" " + text + b"\r\n")
        self.buffer[0:0] = b"\r\n"  # the buffer starts at a line start: find a first-line tag
        reply = self.read_until(b"\r\n" + tag + b" ")
        status = self.read_until(b"\r\n")
        if not status.startswith(b"OK"):
            raise RuntimeError(f"{text!r}: {status!r}")
        return reply

    def close(self) -> None:
        self.sock.close()


def measure(port: int, user: str, password: str, item: bytes, rounds: int) -> float:
    """Best seconds for one `UID FETCH 1:* item`, each round on a new connection."""
    best = float("inf")
    for _ in range(rounds):
        client = Client(port, user, password)
        start = time.perf_counter()
        client.command(b"UID FETCH 1:* " + item)
        best = min(best, time.perf_counter() - start)
        client.close()
    return best


def start_borderline(root: Path, messages: list[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True)
    config_path = root / "borderline.toml"
    port = free_port() % 20000 + 30000
    config_path.write_text(example_config(root / "data", base_port=port, cleartext_login=True))
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(ADDRESS, "eu-dublin", PASSWORD)
        region = cloud.region("eu-dublin")
        now = time.time()
        region.store.deliver([region.planner.local_delivery(ADDRESS, m, now) for m in messages])
    listen = config.region("eu-dublin").imap
    assert listen is not None
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path), "-r", "eu-dublin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    wait_for_port(listen.port)
    return server, listen.port


def in_process(root: Path, rounds: int) -> tuple[float, float]:
    """Seconds to read+decrypt every message, and to do that and parse the envelope."""
    config = load_config(root / "borderline.toml")
    with Cloud(config) as cloud:
        region = cloud.region("eu-dublin")
        key = region.vault.release(ADDRESS, Justification.CUSTOMER_INITIATED_ACCESS, "bench")
        infos = region.store.messages(region.store.mailbox(ADDRESS, "INBOX").id)

        def best(work: Callable[[], object]) -> float:
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                work()
                times.append(time.perf_counter() - start)
            return min(times)

        store = region.store
        raw = best(lambda: [key.decrypt(store.blob(info.blob_id)) for info in infos])
        env = best(lambda: [envelope(Part(key.decrypt(store.blob(i.blob_id)))) for i in infos])
        return raw, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    messages = [make_message(i, args.size) for i in range(args.messages)]
    megabytes = sum(len(m) for m in messages) / 1e6
    root = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    root.chmod(0o755)
    results: dict[str, dict[str, float]] = {}
    try:
        server, port = start_borderline(root / "borderline", messages)
        try:
            results["Borderline"] = {
                "body": measure(port, ADDRESS, PASSWORD, b"BODY.PEEK[]", args.rounds),
                "envelope": measure(port, ADDRESS, PASSWORD, b"ENVELOPE", args.rounds),
            }
        finally:
            stop(server)
        raw, env = in_process(root / "borderline", args.rounds)
        results["in-process decrypt (+ parse), no IMAP"] = {"body": raw, "envelope": env}
        if not dovecot_imap.available():
            print(f"peer: {dovecot_imap.DOVECOT} not found (apt-get install dovecot-imapd)")
        else:
            server, port = dovecot_imap.start(root / "dovecot", {"bench": messages})
            password = dovecot_imap.PASSWORD
            try:
                results["Dovecot 2.3 (maildir)"] = {
                    "body": measure(port, "bench", password, b"BODY.PEEK[]", args.rounds),
                    "envelope": measure(port, "bench", password, b"ENVELOPE", args.rounds),
                }
            finally:
                stop(server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.messages} messages of {args.size} bytes ({megabytes:.1f} MB), best of {args.rounds}"
    )
    print(f"{'server':<40} {'BODY.PEEK[] msg/s':>18} {'MB/s':>8} {'ENVELOPE msg/s':>15}")
    for name, times in results.items():
        print(
            f"{name:<40} {args.messages / times['body']:>18,.0f}"
            f" {megabytes / times['body']:>8.1f} {args.messages / times['envelope']:>15,.0f}"
        )
    peer = results.get("Dovecot 2.3 (maildir)")
    if peer is not None:
        ours = results["Borderline"]
        print(
            f"ratio Borderline / Dovecot: body {peer['body'] / ours['body']:.2f}x,"
            f" envelope {peer['envelope'] / ours['envelope']:.2f}x"
        )


if __name__ == "__main__":
    main()
