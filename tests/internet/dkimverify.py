"""dkimpy's own `dkimverify` command, run as a separate process whose DNS is the test's
Knot server: the independent check that a signature verifies as a receiver would see it.

Run as `python -m tests.internet.dkimverify PORT [--index N] < message`."""

from __future__ import annotations

import subprocess
import sys

import dns.resolver


def dkimverify(message: bytes, dns_port: int, index: int = 0) -> subprocess.CompletedProcess[str]:
    """Exit code 0 and "signature ok" when signature `index` verifies."""
    return subprocess.run(
        [sys.executable, "-m", "tests.internet.dkimverify", str(dns_port), "--index", str(index)],
        input=message.decode("utf-8", "surrogateescape"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _main() -> None:
    from dkim import dkimverify as command

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = int(sys.argv.pop(1))
    dns.resolver.default_resolver = resolver
    command.main()


if __name__ == "__main__":
    _main()
