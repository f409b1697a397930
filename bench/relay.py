"""Crossing the boundary: mail accepted in us-east for an account homed in eu-dublin is
sealed, queued, relayed and stored there. Measures end-to-end msg/s (first message sent
until the last one is stored in Dublin) against the named peer measured in the same run:
the same messages sent straight to the home region's MX (no sealing, no relay).

    .venv/bin/python bench/relay.py [--messages 2000] [--size 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import example_config, load_config
from processes import stop, wait_for_port
from smtp_ingest import CONNECTIONS, make_message, send_all


def stored_count(database: Path) -> int:
    """Messages in the region's store (counted read-only, beside the running server)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def run(workdir: Path, via_region: str, count: int, size: int) -> float:
    config_path = workdir / "borderline.toml"
    config_path.write_text(example_config(workdir / "data", base_port=free_base_port()))
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account("alice@example.test", "eu-dublin", "bench-password")
    server = subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path)],
        stdout=subprocess.DEVNULL,
    )
    port = config.region(via_region).smtp.port
    try:
        wait_for_port(port)
        messages = [make_message(size, i) for i in range(count)]
        home_db = config.cloud.data_dir / "eu-dublin" / "mail.sqlite"
        start = time.perf_counter()
        asyncio.run(send_all(port, messages, "alice@example.test"))
        deadline = time.monotonic() + 300
        while stored_count(home_db) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("messages did not all arrive within 5 minutes")
            time.sleep(0.01)
        return count / (time.perf_counter() - start)
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20, help="message size in KB")
    args = parser.parse_args()
    print(f"# {args.messages} messages of {args.size} KB over {CONNECTIONS} connections")
    rates = {}
    for name, via in (
        ("via us-east (sealed, relayed)", "us-east"),
        ("direct to eu-dublin", "eu-dublin"),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
            rates[name] = run(Path(tmp), via, args.messages, args.size * 1024)
        print(f"{name:<32} {rates[name]:>8.0f} msg/s stored in eu-dublin")
    relayed, direct = rates.values()
    print(f"ratio relayed / direct: {relayed / direct:.2f}x")


if __name__ == "__main__":
    main()
