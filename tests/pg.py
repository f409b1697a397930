"""A real, throwaway PostgreSQL server for tests: initdb into a temp folder, loopback only."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.net import free_port


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL bin directory (Debian layout), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4])
    )
    return Path(found[-1]).parent if found else None


def started_server() -> PostgresServer:
    """A throwaway server, started, for a benchmark: it exits saying why if PostgreSQL is
    not installed."""
    bin_dir = server_binaries()
    if bin_dir is None:
        sys.exit("bench: no PostgreSQL server binaries (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    server.start()
    return server


class PostgresServer:
    """initdb refuses to run as root, so as root the server runs as the `postgres` user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="borderline-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()}")

    def start(self) -> None:
        # --no-sync only skips flushing initdb's own files; the server itself runs fsync=on.
        self._run(
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--locale=C.UTF-8", "--no-sync"),
        )
        for _ in range(3):  # the free port may be taken between probing and binding
            try:
                self._pg_ctl_start()
                return
            except RuntimeError:
                self.port = free_port()
        self._pg_ctl_start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rpartition("/")[2]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def load(self, url: str, dump: Path) -> None:
        """Run a plain-SQL pg_dump file into the database (with psql, which reads its
        meta-commands)."""
        subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), url],
            capture_output=True,
            timeout=60,
            check=True,
        )

    def crash_and_restart(self) -> None:
        """Kill the server without a shutdown checkpoint (as a power cut would), then start it:
        what was committed must come back from the WAL."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        self._pg_ctl_start()

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Stop every process of the server (SIGSTOP): a database that hangs, with its TCP
        connections still open. SIGCONT after the block."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def _pg_ctl_start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            " -c fsync=on -c synchronous_commit=on -c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            *("-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options),
            *("-w", "-t", "30", "start"),
        )

    def stop(self) -> None:
        """Stop the server if it runs, and remove its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
