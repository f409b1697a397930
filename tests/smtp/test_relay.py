"""Relay to a home region that is down: queued durably, retried with backoff, then bounced."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.config import Config, load_config
from borderline.smtp.relay import backoff
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud, write_config


def _send_to_alice_via_us(cloud: Cloud, body: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "bob@example.test", "alice@x", "hi"
    message.set_content(body)
    listen = cloud.config.region("us-east").smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.send_message(message, "bob@example.test", ["alice@example.test"])


def _inbox(cloud: Cloud, region_id: str, address: str) -> list[bytes]:
    region = cloud.region(region_id)
    key = region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(address, "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n) for n in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(30) == 3600.0


@contextmanager
def us_region_alone(config_path: Path) -> Iterator[tuple[Config, Cloud, RunningCloud]]:
    """Alice homed in Dublin, Bob in the US; only the US region is up."""
    config = load_config(config_path)
    with Cloud(config) as setup:
        setup.add_account("alice@example.test", "eu-dublin", PASSWORD)
        setup.add_account("bob@example.test", "us-east", PASSWORD)
    us_only = Cloud(config, only="us-east")
    us = RunningCloud(us_only)
    try:
        yield config, us_only, us
    finally:
        us.stop()
        us_only.close()


def test_home_region_down_then_up_delivers_once(tmp_path: Path) -> None:
    with us_region_alone(write_config(tmp_path)) as (config, us_only, us):
        _send_to_alice_via_us(us_only, "waiting for dublin")
        store = us_only.region("us-east").store
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not store.due_relays(time.time() + 3600)[0].attempts:
            time.sleep(0.05)
        [item] = store.due_relays(time.time() + 3600)
        assert item.attempts == 1 and item.last_error is not None
        assert item.next_attempt > time.time() + 1, "the next try waits (backoff)"
        # Dublin comes up; the relay goes through on its next attempt.
        dublin_only = Cloud(config, only="eu-dublin")
        dublin = RunningCloud(dublin_only)
        try:
            store.relay_failed(item.id, "retry now", time.time())
            assert us.drained(20)
        finally:
            dublin.stop()
            dublin_only.close()
    with Cloud(config) as cloud:
        [stored] = _inbox(cloud, "eu-dublin", "alice@example.test")
        assert b"waiting for dublin" in stored


@pytest.mark.slow
def test_after_the_retry_window_the_sender_gets_a_bounce(tmp_path: Path) -> None:
    config_path = write_config(
        tmp_path,
        **{
            "max_message_size = 26214400": "max_message_size = 26214400\n"
            "relay_retry_window_seconds = 1"
        },
    )
    with us_region_alone(config_path) as (_, us_only, us):
        _send_to_alice_via_us(us_only, "never arrives")
        time.sleep(1.2)
        store = us_only.region("us-east").store
        [item] = store.due_relays(time.time() + 3600)
        store.relay_failed(item.id, "retry now", time.time())
        assert us.drained(20)
        [bounce] = _inbox(us_only, "us-east", "bob@example.test")
    assert b"Undelivered Mail Returned to Sender" in bounce
    assert b"message/delivery-status" in bounce
    assert b"Final-Recipient: rfc822; alice@example.test" in bounce
    assert b"never arrives" not in bounce, "the queuing region cannot read what it bounces"


def test_refused_recipients_bounce_while_the_rest_is_delivered(running: RunningCloud) -> None:
    running.cloud.add_account("carol@example.test", "eu-dublin", PASSWORD)
    us = next(s for s in running.runtime.smtp if s.region.id == "us-east")
    running.call(us.relay.stop())  # queue everything first, then relay in one pass
    sends = {
        "first": ["alice@example.test"],
        "for carol": ["carol@example.test"],
        "for both": ["alice@example.test", "carol@example.test"],
        "last": ["alice@example.test"],
    }
    listen = running.cloud.config.region("us-east").smtp
    for body, rcpts in sends.items():
        message = EmailMessage()
        message["Subject"] = body
        message.set_content(body)
        with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
            client.send_message(message, "bob@example.test", rcpts)
    running.cloud.directory.remove("carol@example.test")  # gone before the relays arrive
    assert running.call(us.relay.run_once()) == 3, "all but the one for carol alone"
    assert us.region.store.queued_relays() == 0
    alice = _inbox(running.cloud, "eu-dublin", "alice@example.test")
    bodies = sorted(m.split(b"\r\n\r\n", 1)[1].strip() for m in alice)
    assert bodies == [b"first", b"for both", b"last"]
    bounces = _inbox(running.cloud, "us-east", "bob@example.test")
    assert len(bounces) == 2
    for bounce in bounces:
        assert b"Final-Recipient: rfc822; carol@example.test" in bounce
        assert b"550 5.1.1" in bounce
        assert b"Final-Recipient: rfc822; alice@example.test" not in bounce
