"""A real authoritative DNS server (Knot DNS, Debian's `knot`) on a loopback port, serving
the whole `test.` zone from a zone file the tests generate: one server per test module,
records replaced per test with `publish` (a zone reload takes milliseconds)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.resolver

from tests.internet.components import free_port, require_program, wait_for

ZONE = "test."


@dataclass(frozen=True)
class Record:
    """One resource record; `name` is relative to the zone or absolute with a final dot."""

    name: str
    type: str
    data: str
    ttl: int = 60


def txt(name: str, text: str, ttl: int = 60) -> Record:
    """A TXT record, split into the 255-byte strings DNS requires and quoted for a zone file."""
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    quoted = " ".join('"' + _escape(chunk) + '"' for chunk in chunks)
    return Record(name, "TXT", quoted, ttl)


def _escape(chunk: bytes) -> str:
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\{byte:03d}"
        for byte in chunk
    )


class KnotServer:
    def __init__(self) -> None:
        self.knotd = require_program("/usr/sbin/knotd", "knot")
        self.knotc = require_program("/usr/sbin/knotc", "knot")
        self.root = Path(tempfile.mkdtemp(prefix="borderline-knot-"))
        self.port = free_port()
        self.serial = 1
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "knot.conf"

    @property
    def socket(self) -> Path:
        return self.root / "knot.sock"

    def start(self, records: Iterable[Record] = ()) -> None:
        self._write_zone(records)
        self.config.write_text(
            "server:\n"
            f'    rundir: "{self.root}"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "    background-workers: 1\n"
            "    udp-workers: 1\n"
            "    tcp-workers: 1\n"
            "database:\n"
            f'    storage: "{self.root}/db"\n'
            "control:\n"
            f'    listen: "{self.socket}"\n'
            "log:\n"
            f'  - target: "{self.root}/knot.log"\n'
            "    any: info\n"
            "template:\n"
            "  - id: default\n"
            f'    storage: "{self.root}"\n'
            '    file: "%s.zone"\n'
            "    zonefile-sync: -1\n"
            "    zonefile-load: whole\n"
            "    journal-content: none\n"
            "zone:\n"
            f"  - domain: {ZONE}\n"
        )
        self.process = subprocess.Popen(
            [self.knotd, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(self._answers, 15, f"knotd on port {self.port} ({self.root}/knot.log)")

    def publish(self, records: Iterable[Record]) -> None:
        """Replace every record of the zone (SOA and NS stay) and wait until it is served."""
        self.serial += 1
        self._write_zone(records)
        done = subprocess.run(
            [self.knotc, "-s", str(self.socket), "-b", "zone-reload", ZONE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"knotc zone-reload failed: {done.stdout}{done.stderr}")
        wait_for(lambda: self._serial() == self.serial, 10, f"zone serial {self.serial}")

    def resolver(self, timeout: float = 2.0) -> dns.resolver.Resolver:
        """A blocking resolver that asks only this server."""
        resolver = dns.resolver.Resolver(configure=False)
        self._point(resolver, timeout)
        return resolver

    def async_resolver(self, timeout: float = 2.0) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        self._point(resolver, timeout)
        return resolver

    def _point(self, resolver: dns.resolver.BaseResolver, timeout: float) -> None:
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.cache = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _write_zone(self, records: Iterable[Record]) -> None:
        lines = [
            f"$ORIGIN {ZONE}",
            "$TTL 60",
            f"@ SOA ns.{ZONE} hostmaster.{ZONE} {self.serial} 3600 600 86400 60",
            f"@ NS ns.{ZONE}",
            "ns A 127.0.0.1",
        ]
        lines += [f"{r.name} {r.ttl} IN {r.type} {r.data}" for r in records]
        zone_file = self.root / f"{ZONE}zone"
        temporary = zone_file.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.replace(zone_file)

    def _serial(self) -> int | None:
        try:
            answer = self.resolver(timeout=0.5).resolve(ZONE, "SOA")
        except dns.exception.DNSException:
            return None
        return int(answer[0].serial)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            stderr = self.process.stderr.read().decode() if self.process.stderr else ""
            raise RuntimeError(f"knotd exited with {self.process.returncode}: {stderr}")
        return self._serial() is not None
