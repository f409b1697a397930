"""`borderline queue` as an operator runs it beside a running server whose relays wait: the
home region is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from borderline.store import MailStore
from tests.conftest import write_config
from tests.smtp.test_relay import _delivery_status, _inbox, _send_to_alice_via_us, us_region_alone

pytestmark = pytest.mark.one_engine("the command reads the queue through the store's interface")


def queue(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "borderline", "queue", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"},
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def attempts(store: MailStore) -> dict[int, int]:
    """Each queued relay's attempts, by id."""
    return {item.id: item.attempts for item in store.due_relays(time.time() + 86400)}


def test_list_show_retry_and_bounce(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with us_region_alone(config) as (_, us_only, us):
        store = us_only.region("us-east").store
        for body in ("first", "second"):
            _send_to_alice_via_us(us_only, body)
        wait_for(lambda: list(attempts(store).values()) == [1, 1], "both relays failed once")
        first, second = sorted(attempts(store))
        for parked in (first, second):  # no retry of their own while the test runs
            store.relay_failed(parked, "Connect call failed", time.time() + 3600)

        listed = queue(config, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["region"], r["queue"], r["id"]) for r in rows] == [
            ("us-east", "relay", first),
            ("us-east", "relay", second),
        ]
        assert rows[0]["destination"] == "eu-dublin" and rows[0]["attempts"] == 2
        assert "Connect" in rows[0]["last_error"] and rows[0]["age_seconds"] >= 0
        assert rows[0]["rcpts"] == ["alice@example.test"] and rows[0]["bounce"] is None

        table = queue(config, "list")
        assert table.returncode == 0, table.stderr
        assert f"│ {first} " in table.stdout and "eu-dublin" in table.stdout
        assert "@" not in table.stdout, "the table names no one"
        shown = queue(config, "show", str(first), "--region", "us-east")
        assert "mail_from: bob@example.test" in shown.stdout
        assert "rcpts: alice@example.test" in shown.stdout

        # Retry: an item waiting an hour is tried again at once.
        assert queue(config, "retry", str(first), "--region", "us-east").returncode == 0
        wait_for(lambda: attempts(store)[first] == 3, "the retried relay was tried again")
        assert attempts(store)[second] == 2, "only the one retried"

        # Bounce: the sender hears why, the item leaves the queue, the other stays.
        bounced = queue(config, "bounce", str(first), "-r", "us-east", "--reason", "dublin shut")
        assert bounced.returncode == 0, bounced.stderr
        wait_for(lambda: len(attempts(store)) == 1, "the bounced relay left the queue")
        [report] = _inbox(us_only, "us-east", "bob@example.test")
        _, [alice] = _delivery_status(report)
        assert alice["Action"] == "failed" and b"dublin shut" in report
        assert list(attempts(store)) == [second]
        assert us.runtime.listening

        gone = queue(config, "show", str(first), "--region", "us-east")
        assert gone.returncode == 1
        assert gone.stderr.strip() == f"error: no item {first} in the relay queue of us-east"
        refused = queue(config, "bounce", str(second), "-r", "us-east", "--reason", "a\nb")
        assert refused.returncode == 1 and "one line" in refused.stderr
        assert "no queue 'mars'" in queue(config, "list", "--queue", "mars").stderr
