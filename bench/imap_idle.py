"""IMAP IDLE at scale: memory per idle connection and the time until every session hears of
new mail, against Dovecot in the same run.

Borderline (`borderline serve --region eu-dublin`, its own process) and a throwaway
Dovecot 2.3 (Debian's dovecot-imapd, Maildir) each get N connections of one account, all
of them SELECT INBOX and IDLE. Memory: the servers' proportional set size (PSS, from
/proc/<pid>/smaps_rollup, summed over every process of the server) with the N sessions
idle, less the same with one session, over N - 1. Notify: one new message - through
Borderline's MX over SMTP, into Dovecot's Maildir as its LDA would (a file renamed from
tmp/ into new/) - and the time from the start of that delivery until the last of the N
sessions has read its `* EXISTS`. Rounds alternate the servers; medians and ranges.

Logins are not what this measures: Borderline's accounts hash at the cheapest
`[passwords]` cost, and Dovecot checks a static password. Each Dovecot IDLE session uses an
inotify instance: with fewer than N allowed (fs.inotify.max_user_instances, 128 by default
on Linux) the others look for changes every 30 s instead, which the benchmark warns of.

    .venv/bin/python bench/imap_idle.py [--sessions 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import dovecot_imap
from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from processes import stop, wait_for_port

ADDRESS = "bench@example.test"
PASSWORD = "bench password"
ROOT = Path(__file__).resolve().parent.parent
PER_SOURCE = 90  # connections per loopback source address (Borderline allows 100 per IP)
CHEAP_PASSWORDS = "\n[passwords]\ntime_cost = 1\nmemory_kib = 8192\nparallelism = 1\n"
# Each Dovecot IDLE session (a process of its own) takes an inotify instance.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
MESSAGE = b"From: a@example.org\r\nTo: bench@example.test\r\nSubject: new\r\n\r\nnew mail\r\n"


def pss_kib(root_pid: int) -> int:
    """PSS of a process and all its descendants."""
    pids, total = [root_pid], 0
    while pids:
        pid = pids.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines() if line[:4] == "Pss:")
        pids += [int(child) for child in children]
    return total


class Idler:
    """One session: logged in, INBOX selected, in IDLE."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, user: str, password: str, source: str) -> Idler:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0), limit=1 << 20
        )
        idler = cls(reader, writer)
        await reader.readline()
        await idler.command(b"l", f'LOGIN "{user}" "{password}"'.encode())
        await idler.command(b"s", b"SELECT INBOX")
        writer.write(b"i IDLE\r\n")
        while not (await reader.readline()).startswith(b"+"):
            pass
        return idler

    async def command(self, tag: bytes, line: bytes) -> None:
        self.writer.write(tag + b" " + line + b"\r\n")
        while not (reply := await self.reader.readline()).startswith(tag + b" "):
            if not reply:
                raise ConnectionError("the server closed the connection")
        if not reply.startswith(tag + b" OK"):
            raise RuntimeError(f"{line!r}: {reply!r}")

    async def until_exists(self) -> float:
        while not (await self.reader.readline()).endswith(b" EXISTS\r\n"):
            pass
        return time.perf_counter()

    def close(self) -> None:
        self.writer.close()


async def measure(
    port: int, user: str, password: str, sessions: int, server_pid: int, deliver: Callable[[], None]
) -> tuple[float, float]:
    """(KiB of PSS per idle session, seconds until all heard of the delivery)."""
    sources = [f"127.0.1.{1 + i // PER_SOURCE}" for i in range(sessions)]
    first = await Idler.open(port, user, password, sources[0])
    await asyncio.sleep(0.5)
    one = pss_kib(server_pid)
    idlers = [first]
    for at in range(1, sessions, 50):
        batch = sources[at : at + 50]
        idlers += await asyncio.gather(*(Idler.open(port, user, password, s) for s in batch))
    await asyncio.sleep(0.5)
    per_session = (pss_kib(server_pid) - one) / (sessions - 1)
    heard: list[Awaitable[float]] = [asyncio.ensure_future(i.until_exists()) for i in idlers]
    start = time.perf_counter()
    await asyncio.to_thread(deliver)
    last = max(await asyncio.wait_for(asyncio.gather(*heard), 60))
    for idler in idlers:
        idler.close()
    return per_session, last - start


def borderline_round(workdir: Path, sessions: int) -> tuple[float, float]:
    config_path = workdir / "borderline.toml"
    text = example_config(workdir / "data", base_port=free_base_port(), cleartext_login=True)
    config_path.write_text(text + "\n[inbound]\nauthenticate = false\n" + CHEAP_PASSWORDS)
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(ADDRESS, "eu-dublin", PASSWORD)
    section = config.region("eu-dublin")
    assert section.imap is not None
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path), "-r", "eu-dublin"],
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        wait_for_port(section.imap.port)

        def deliver() -> None:
            with smtplib.SMTP(section.smtp.host, section.smtp.port, timeout=30) as client:
                client.sendmail("a@example.org", [ADDRESS], MESSAGE)

        return asyncio.run(
            measure(section.imap.port, ADDRESS, PASSWORD, sessions, server.pid, deliver)
        )
    finally:
        stop(server)


def dovecot_round(workdir: Path, sessions: int) -> tuple[float, float]:
    user = "bench"
    workdir.chmod(0o755)  # Dovecot's mail processes run as `nobody`
    server, port = dovecot_imap.start(workdir, {user: []})
    maildir = workdir / "home" / user / "Maildir"
    try:

        def deliver() -> None:
            staged = maildir / "tmp" / "bench.new"
            staged.write_bytes(MESSAGE)
            os.chown(staged, maildir.stat().st_uid, maildir.stat().st_gid)
            staged.rename(maildir / "new" / f"{int(time.time())}.bench.M1P1")

        return asyncio.run(
            measure(port, user, dovecot_imap.PASSWORD, sessions, server.pid, deliver)
        )
    finally:
        stop(server)


def spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.3g} {unit} ({min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not dovecot_imap.available():
        sys.exit(f"peer: {dovecot_imap.DOVECOT} not found (apt-get install dovecot-imapd)")
    instances = int(INOTIFY_INSTANCES.read_text())
    if instances < args.sessions + 50:
        print(
            f"# warning: {INOTIFY_INSTANCES} is {instances}: Dovecot's IDLE sessions past it"
            " fall back to looking every 30 s (raise it as root to measure inotify)"
        )
    results: dict[str, list[tuple[float, float]]] = {"Borderline": [], "Dovecot": []}
    for _ in range(args.rounds):
        for name, run in (("Borderline", borderline_round), ("Dovecot", dovecot_round)):
            workdir = Path(tempfile.mkdtemp(prefix="bench-idle-"))
            try:
                results[name].append(run(workdir, args.sessions))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            memory, notify = results[name][-1]
            print(f"# {name}: {memory / 1024:.2f} MB per session, all notified in {notify:.3f} s")
    print(f"# {args.sessions} IDLE sessions, {args.rounds} rounds: median (range)")
    for name, rows in results.items():
        memory = spread([m / 1024 for m, _ in rows], "MB")
        notify = spread([n for _, n in rows], "s")
        print(f"{name:<11} memory per session {memory}   all notified {notify}")


if __name__ == "__main__":
    main()
