"""Relay to a home region: queued durably, retried with backoff, bounced with a DSN; and
every queued item succeeds or fails on its own."""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from borderline.cloud import Cloud
from borderline.config import Config, load_config
from borderline.smtp.queue import jittered
from borderline.smtp.relay import backoff
from borderline.smtp.server import RegionSmtp
from borderline.store import OutboundRelay
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud, write_config


def _send_to_alice_via_us(cloud: Cloud, body: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "bob@example.test", "alice@x", "hi"
    message.set_content(body)
    listen = cloud.config.region("us-east").smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.send_message(message, "bob@example.test", ["alice@example.test"])


def _delivery_status(dsn: bytes) -> tuple[Message, list[Message]]:
    """The per-message and per-recipient fields of an RFC 3464 report, parsed."""
    report = email.message_from_bytes(dsn, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@example.test>"
    [human, status] = report.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    per_message, *per_recipient = status.get_payload()
    return per_message, per_recipient


def _inbox(cloud: Cloud, region_id: str, address: str) -> list[bytes]:
    region = cloud.region(region_id)
    key = region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(address, "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n) for n in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert backoff(30) == 3600.0


def test_retries_are_spread_by_jitter() -> None:
    """Items that failed together come back spread over +-25% of their backoff."""
    delays = [jittered(100.0) for _ in range(200)]
    assert all(75.0 <= d <= 125.0 for d in delays)
    assert min(delays) < 90.0 < 110.0 < max(delays)


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
    per_message, [alice] = _delivery_status(bounce)
    assert per_message["Reporting-MTA"] == "dns; us-east.example.test"
    assert alice["Final-Recipient"] == "rfc822; alice@example.test"
    # The home region never answered: a temporary failure that outlived the retry window.
    assert (alice["Action"], alice["Status"]) == ("failed", "4.4.7")
    assert alice["Diagnostic-Code"] is None, "no SMTP reply to quote"
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
        _, [carol] = _delivery_status(bounce)
        assert carol["Final-Recipient"] == "rfc822; carol@example.test"
        assert carol["Status"] == "5.1.1"
        assert carol["Remote-MTA"] == "dns; eu-dublin.example.test"
        assert carol["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <carol@example.test>")


def _us_smtp(running: RunningCloud) -> RegionSmtp:
    return next(s for s in running.runtime.smtp if s.region.id == "us-east")


def test_a_null_reverse_path_is_relayed_home(running: RunningCloud) -> None:
    """A bounce (MAIL FROM:<>) for an account homed elsewhere is relayed like any mail."""
    listen = running.cloud.config.region("us-east").smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.sendmail("<>", ["alice@example.test"], b"Subject: bounce\r\n\r\nbounced\r\n")
    assert running.drained(10)
    [stored] = _inbox(running.cloud, "eu-dublin", "alice@example.test")
    assert stored.startswith(b"Return-Path: <>\r\n")


def test_an_item_that_fails_fails_alone(running: RunningCloud) -> None:
    """Good items and poisoned ones (a region no longer configured, one with a null
    sender) in one queue: the good ones are relayed and cleared in the first pass, each
    poisoned one backs off, then bounces to its sender, or to no one for a null sender."""
    us = _us_smtp(running)
    running.call(us.relay.stop())
    listen = running.cloud.config.region("us-east").smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        for number in range(3):
            client.sendmail(
                "bob@example.test", ["alice@example.test"], f"Subject: {number}\r\n\r\nok\r\n"
            )
        client.sendmail("", ["alice@example.test"], b"Subject: null\r\n\r\nok\r\n")
    store = us.region.store
    store.deliver(
        [],
        [
            OutboundRelay("mars", "bob@example.test", ("alice@example.test",), b"sealed"),
            OutboundRelay("mars", "", ("alice@example.test",), b"sealed"),
        ],
    )
    assert running.call(us.relay.run_once()) == 4
    poisoned = store.due_relays(time.time() + 3600)
    assert [item.dest_region for item in poisoned] == ["mars", "mars"]
    for item in poisoned:
        assert item.attempts == 1 and item.next_attempt > time.time()
        assert "mars" in (item.last_error or "")
    assert running.call(us.relay.run_once()) == 0, "nothing is due, nothing is sent again"
    assert len(_inbox(running.cloud, "eu-dublin", "alice@example.test")) == 4

    us.relay.retry_window = 0  # the retry window passes
    for item in poisoned:
        store.relay_failed(item.id, "retry now", time.time())
    assert running.call(us.relay.run_once()) == 0
    assert store.queued_relays() == 0
    [bounce] = _inbox(running.cloud, "us-east", "bob@example.test")
    _, [alice] = _delivery_status(bounce)
    assert (alice["Final-Recipient"], alice["Status"]) == ("rfc822; alice@example.test", "4.4.7")


class _MultiLineRefusal:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        return "550-5.1.1 <alice@example.test>: this account has gone away\r\n550 5.1.1 for good"


def test_a_multi_line_refusal_bounces_with_its_status_in_one_field(tmp_path: Path) -> None:
    """A DSN quotes a multi-line reply on one Diagnostic-Code line, with the reply's own
    enhanced status code: the report's header blocks stay well formed."""
    with us_region_alone(write_config(tmp_path)) as (config, us_only, us):
        dublin = config.region("eu-dublin").smtp
        peer = Controller(_MultiLineRefusal(), hostname=dublin.host, port=dublin.port)
        peer.start()
        try:
            _send_to_alice_via_us(us_only, "refused")
            assert us.drained(20)
        finally:
            peer.stop()
        [bounce] = _inbox(us_only, "us-east", "bob@example.test")
    assert b"\n" not in bounce.replace(b"\r\n", b""), "every line of the DSN ends in CRLF"
    per_message, [alice] = _delivery_status(bounce)
    assert per_message["Reporting-MTA"] == "dns; us-east.example.test"
    assert set(alice.keys()) == {
        "Final-Recipient",
        "Action",
        "Status",
        "Remote-MTA",
        "Diagnostic-Code",
        "Last-Attempt-Date",
    }
    assert (alice["Action"], alice["Status"]) == ("failed", "5.1.1")
    assert alice["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <alice@example.test>: this account has gone away 5.1.1 for good"
    )
