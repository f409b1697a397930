"""What the benchmarks share: free loopback ports, waiting for a server, stopping it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.net import free_port, wait_for_port

__all__ = ["free_port", "listeners", "serve_example", "stop", "wait_for_listeners", "wait_for_port"]

if TYPE_CHECKING:
    from borderline.config import Config


def listeners(port: int) -> int:
    """How many sockets listen on the TCP `port`: with SO_REUSEPORT each ingest process has
    its own, so a server with workers is fully up once there is one per process."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                count += state == "0A" and int(local.rpartition(":")[2], 16) == port
    return count


def wait_for_listeners(
    server: subprocess.Popen[bytes], port: int, count: int, timeout: float = 60.0
) -> None:
    """Wait until `count` processes listen on `port` (`server` and its workers)."""
    deadline = time.monotonic() + timeout
    while listeners(port) < count:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}) before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{listeners(port)} of {count} processes listen on {port}")
        time.sleep(0.05)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def serve_example(
    workdir: Path,
    *serve_args: str,
    max_message_size: int | None = None,
    stores: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Config]:
    """`borderline serve` on the example two-region cloud, alice homed in eu-dublin; the
    regions named in `stores` keep their mail in those PostgreSQL databases."""
    from borderline.cli.demo import free_base_port
    from borderline.cloud import Cloud
    from borderline.config import example_config, load_config

    config_path = workdir / "borderline.toml"
    base_port = free_base_port()
    text = example_config(workdir / "data", base_port=base_port, stores=stores)
    if max_message_size is not None:
        limit = f"max_message_size = {max_message_size}"
        text = text.replace("max_message_size = 26214400", limit)
    # Sender authentication off: the peers (Postfix, Dovecot, aiosmtpd) check no SPF, DKIM
    # or DMARC either, and the senders here have no DNS records to look up.
    config_path.write_text(text + "\n[inbound]\nauthenticate = false\n")
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account("alice@example.test", "eu-dublin", "bench-password")
    command = [sys.executable, "-m", "borderline", "serve", "-c", str(config_path), *serve_args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL), config
