"""Kill the server with SIGKILL under load; after a restart every 250 is there exactly once."""

from __future__ import annotations

import email
import os
import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.config import load_config
from borderline.vault import Justification
from tests.conftest import PASSWORD, write_config
from tests.net import wait_for_port
from tests.smtp.served import serve

SENDERS = 4


def _sender(port: int, rcpt: str, prefix: str, acked: list[str], stop: threading.Event) -> None:
    """Send until the server dies; record the Message-ID of every message answered 250."""
    number = 0
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            while not stop.is_set():
                number += 1
                message_id = f"<{prefix}-{number}@durability.test>"
                body = (
                    f"Message-ID: {message_id}\r\nSubject: n{number}\r\n\r\n"
                    + "line of text\r\n" * 300
                )
                client.sendmail("load@example.org", [rcpt], body.encode())
                acked.append(message_id)
    except (smtplib.SMTPException, OSError):
        return


def _message_ids(cloud: Cloud, region_id: str, address: str) -> list[str]:
    region = cloud.region(region_id)
    key = region.vault.release(address, Justification.PROVIDER_INITIATED_SYSTEM_OPERATION, "test")
    box = region.store.mailbox(address, "INBOX")
    ids = []
    for info in region.store.messages(box.id):
        parsed = email.message_from_bytes(key.decrypt(region.store.blob(info.blob_id)))
        ids.append(str(parsed["Message-ID"]))
    return ids


@pytest.mark.slow
def test_sigkill_under_load_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    cloud = Cloud(config)
    cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    cloud.close()
    dublin_mx = config.region("eu-dublin").smtp.port
    us_mx = config.region("us-east").smtp.port

    server = serve(config_path)
    wait_for_port(dublin_mx)
    wait_for_port(us_mx)
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        # Half the load arrives at alice's home, half in the US (sealed, queued, relayed).
        threading.Thread(
            target=_sender,
            args=(dublin_mx if i % 2 else us_mx, "alice@example.test", f"s{i}", acked, stop),
        )
        for i in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    stop.set()
    for thread in threads:
        thread.join(15)
    assert len(acked) >= 300, "the load never got going"

    server = serve(config_path)
    try:
        wait_for_port(dublin_mx)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Cloud(config, only="us-east") as us_only:
                if us_only.region("us-east").store.queued_relays() == 0:
                    break
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

    with Cloud(config) as cloud:
        stored = _message_ids(cloud, "eu-dublin", "alice@example.test")
        assert cloud.region("us-east").store.queued_relays() == 0
    missing = set(acked) - set(stored)
    duplicates = {m for m in stored if stored.count(m) > 1}
    assert not missing, f"{len(missing)} acknowledged messages lost"
    assert not duplicates, f"stored more than once: {sorted(duplicates)[:5]}"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_extra_ingest_workers_share_the_port_and_the_store(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    port = config.region("eu-dublin").smtp.port
    server = serve(config_path, "--ingest-workers", "2")
    try:
        wait_for_port(port)
        deadline = time.monotonic() + 30
        while not _children(server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        [worker] = _children(server.pid)
        acked: list[str] = []
        stop = threading.Event()
        senders = [
            threading.Thread(
                target=_sender, args=(port, "alice@example.test", f"w{i}", acked, stop)
            )
            for i in range(6)
        ]
        for thread in senders:
            thread.start()
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for thread in senders:
            thread.join(15)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert (
        not Path(f"/proc/{worker}").exists()
        or "zombie" in Path(f"/proc/{worker}/status").read_text()
    ), "the ingest worker stops with the server"
    with Cloud(config) as cloud:
        stored = _message_ids(cloud, "eu-dublin", "alice@example.test")
    assert len(acked) >= 200
    assert sorted(stored) == sorted(set(acked))
