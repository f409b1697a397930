"""IMAP: what clients really fetch and search, timed against Dovecot in the same run.

Borderline (`borderline serve --region eu-dublin`, its own process) and a throwaway
Dovecot 2.3 (Debian's dovecot-imapd, a Maildir prefilled with the same files) serve the
same mixed corpus (plain text, multipart/alternative, multipart/mixed with an attachment).
Each round opens a new connection per command on each server in turn (interleaved, so
the noise of a shared machine falls on both); the first round warms both (Dovecot builds
its index cache) and is not counted. Printed: per command the median and range over the
rounds of Borderline's time / Dovecot's time (goal: at most 1.5x; BODY.PEEK[] at most 1x).

    .venv/bin/python bench/imap_fetch.py [--messages 3000] [--size 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dovecot_imap
from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from borderline.imap.summary import summarize
from processes import stop, wait_for_port

ADDRESS = "bench@example.test"
PASSWORD = "bench password"
ROOT = Path(__file__).resolve().parent.parent
THUNDERBIRD_HEADERS = (
    "From To Cc Subject Date Message-ID Priority X-Priority References Newsgroups"
    " In-Reply-To Content-Type Reply-To"
)
COMMANDS: dict[str, bytes] = {
    "SELECT": b"SELECT INBOX",
    # What a client polls every folder with (and lists them with at start).
    "STATUS": b"STATUS INBOX (MESSAGES UNSEEN RECENT UIDNEXT UIDVALIDITY)",
    "LIST": b'LIST "" "*"',
    "FETCH FLAGS": b"UID FETCH 1:* (FLAGS)",
    "ENVELOPE": b"UID FETCH 1:* ENVELOPE",
    "BODYSTRUCTURE": b"UID FETCH 1:* BODYSTRUCTURE",
    "Thunderbird header sync": b"UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ("
    + THUNDERBIRD_HEADERS.encode()
    + b")])",
    "SEARCH FROM": b'UID SEARCH FROM "sender1234@"',
    "SEARCH TEXT": b'UID SEARCH TEXT "needle"',
    "BODY.PEEK[]": b"UID FETCH 1:* BODY.PEEK[]",
}
# A content read of one message: on a new connection, what Borderline's logged key release
# costs (once per session); untimed before a command, a session that has paid it already.
FIRST_READ = b"UID FETCH 1 ENVELOPE"


def make_message(index: int, size: int) -> bytes:
    """Message `index` of the corpus: every third plain, multipart/alternative or
    multipart/mixed with a base64 attachment; every 100th says "needle" in its text."""
    kind = index % 3
    boundary = f"=_bench_{index}_boundary"
    content_type = (
        "text/plain; charset=utf-8",
        f'multipart/alternative; boundary="{boundary}"',
        f'multipart/mixed; boundary="{boundary}"',
    )[kind]
    header = (
        f"From: Sender {index} <sender{index}@example.org>\r\n"
        f"To: Bench <{ADDRESS}>\r\nCc: Other <other@example.org>\r\n"
        f"Subject: benchmark message {index}\r\n"
        "Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench{index}@example.org>\r\n"
        f"References: <bench{index - 1}@example.org>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    ).encode()
    word = b"needle" if index % 100 == 0 else b"thread"
    line = b"line of message %d padded with some %s to look like mail.\r\n" % (index, word)
    room = max(0, size - len(header))
    if kind == 0:
        return header + (line * (room // len(line) + 1))[:room]
    text = line * (room // 3 // len(line) + 1)
    second = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>" + text + b"</p>\r\n"
        if kind == 1
        else b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="data.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(bytes(range(256)) * (room // 2 // 256 + 1)).replace(b"\n", b"\r\n")
    )
    delimiter = b"--" + boundary.encode()
    return (
        header
        + b"This is a multi-part message in MIME format.\r\n"
        + delimiter
        + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text
        + b"\r\n"
        + delimiter
        + b"\r\n"
        + second
        + b"\r\n"
        + delimiter
        + b"--\r\n"
    )


class Client:
    """A raw IMAP client that only frames responses, so the server is what is measured."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.counter = 0
        self.read_until(b"\r\n")
        self.command(f'LOGIN "{user}" "{password}"'.encode())

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


def timed(
    port: int, user: str, password: str, command: bytes, released: bool = False
) -> tuple[float, int]:
    """Seconds for one command on a new connection (SELECT timed itself; `released`: after a
    first content read), and the length of its answer (so a broken answer shows)."""
    client = Client(port, user, password)
    try:
        if command != COMMANDS["SELECT"]:
            client.command(COMMANDS["SELECT"])
        if released:
            client.command(FIRST_READ)
        start = time.perf_counter()
        reply = client.command(command)
        return time.perf_counter() - start, len(reply)
    finally:
        client.close()


def start_borderline(root: Path, messages: list[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True)
    config_path = root / "borderline.toml"
    port = free_base_port()
    config_path.write_text(example_config(root / "data", base_port=port, cleartext_login=True))
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(ADDRESS, "eu-dublin", PASSWORD)
        region = cloud.region("eu-dublin")
        region.planner.summarize = summarize  # as runtime.py wires it for SMTP and APPEND
        now = time.time()
        for first in range(0, len(messages), 500):
            batch = messages[first : first + 500]
            region.store.deliver([region.planner.local_delivery(ADDRESS, m, now) for m in batch])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (plus a warm-up)")
    parser.add_argument("--only", action="append", help="measure only this command (repeatable)")
    args = parser.parse_args()
    if not dovecot_imap.available():
        sys.exit(f"peer: {dovecot_imap.DOVECOT} not found (apt-get install dovecot-imapd)")
    commands = {name: COMMANDS[name] for name in args.only or COMMANDS}
    # Each command on a new session (paying the key release where it reads content) and,
    # where it reads content, in a session that released the key already.
    runs = [(name, command, False) for name, command in commands.items()]
    runs += [
        (f"{name}, key released", command, True)
        for name, command in commands.items()
        if name not in ("SELECT", "STATUS", "LIST", "FETCH FLAGS")
    ]
    runs.append(("first content read", FIRST_READ, False))
    messages = [make_message(i, args.size) for i in range(args.messages)]
    megabytes = sum(len(m) for m in messages) / 1e6
    root = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    root.chmod(0o755)
    ours: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    peer: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    try:
        ours_server, ours_port = start_borderline(root / "borderline", messages)
        peer_server, peer_port = dovecot_imap.start(root / "dovecot", {"bench": messages})
        try:
            for round_ in range(args.rounds + 1):
                for name, command, released in runs:
                    mine, mine_size = timed(ours_port, ADDRESS, PASSWORD, command, released)
                    theirs, their_size = timed(
                        peer_port, "bench", dovecot_imap.PASSWORD, command, released
                    )
                    if round_:
                        ours[name].append(mine)
                        peer[name].append(theirs)
                    elif name.startswith("SEARCH"):
                        print(f"{name}: {mine_size} / {their_size} bytes answered")
        finally:
            stop(ours_server)
            stop(peer_server)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.messages} mixed messages of about {args.size} bytes ({megabytes:.1f} MB),"
        f" {args.rounds} interleaved rounds after a warm-up,"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    head = ("command", "Borderline ms", "Dovecot ms", "ratio median", "range")
    print(f"{head[0]:<40} {head[1]:>14} {head[2]:>11} {head[3]:>13} {head[4]:>14}")
    for name in ours:
        ratios = sorted(a / b for a, b in zip(ours[name], peer[name], strict=True))
        print(
            f"{name:<40} {statistics.median(ours[name]) * 1000:>14.1f}"
            f" {statistics.median(peer[name]) * 1000:>11.1f}"
            f" {statistics.median(ratios):>12.2f}x {ratios[0]:>6.2f} - {ratios[-1]:.2f}x"
        )


if __name__ == "__main__":
    main()
