"""What an operator watches on a running cloud: health checks, metrics and the event log,
over real SMTP, IMAP and HTTP connections."""

from __future__ import annotations

import imaplib
import io
import json
import logging
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from borderline import observe
from borderline.cloud import Cloud
from borderline.config import load_config
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.smtp.test_ingress import inbox

ALICE, BOB = "alice@example.test", "bob@example.test"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def api(running: RunningCloud, path: str) -> httpx.Response:
    return httpx.get(f"http://{running.cloud.config.api.listen}{path}", timeout=10)


def scrape(running: RunningCloud) -> Samples:
    """Every sample of /metrics, by name and labels."""
    reply = api(running, "/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def send(running: RunningCloud, region: str, sender: str, rcpts: list[str]) -> tuple[int, str]:
    """One SMTP transaction on a region's MX; the reply to its data (or to its last RCPT
    when every recipient was refused)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(rcpts), "hi"
    message.set_content("the body stays out of the log")
    listen = running.cloud.config.region(region).smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        replies = [client.rcpt(rcpt) for rcpt in rcpts]
        if not any(code == 250 for code, _ in replies):
            code, text = replies[-1]
            client.rset()
        else:
            code, text = client.data(message.as_bytes(policy=SMTP))
    return code, text.decode()


def imap_login(running: RunningCloud, region: str, address: str, password: str) -> bool:
    listen = running.cloud.config.region(region).imap
    with imaplib.IMAP4(listen.host, listen.port, timeout=30) as client:
        try:
            client.login(address, password)
        except imaplib.IMAP4.error:
            return False
        client.logout()
        return True


@pytest.fixture
def events() -> Iterator[io.StringIO]:
    """The process's log at INFO, as JSON lines, for one test."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    observe.configure_logging("info", "json", stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_health_and_readiness(running: RunningCloud) -> None:
    assert api(running, "/healthz").json() == {"status": "ok"}
    ready = api(running, "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True
    assert set(ready.json()["regions"]) == {"eu-dublin", "us-east"}
    dublin = api(running, "/readyz/eu-dublin").json()["regions"]["eu-dublin"]
    assert dublin == {"ready": True, "listeners": "ok", "store": "ok", "log": "ok"}
    assert api(running, "/readyz/mars").status_code == 404

    running.runtime.listening = False  # as while the listeners start or drain
    try:
        not_ready = api(running, "/readyz")
    finally:
        running.runtime.listening = True
    assert not_ready.status_code == 503
    assert not_ready.json()["regions"]["us-east"]["listeners"] == "not listening"


@pytest.mark.one_engine("counts events of the adapters; the store's figures are read alike")
def test_metrics_count_what_flowed(running: RunningCloud) -> None:
    before = scrape(running)
    for _ in range(2):  # accepted in the US, relayed to Alice's home in Dublin
        code, _ = send(running, "us-east", BOB, [ALICE])
        assert code == 250
    code, _ = send(running, "us-east", BOB, ["nobody@example.test"])
    assert code == 550
    assert running.drained()
    assert imap_login(running, "eu-dublin", ALICE, PASSWORD)
    assert not imap_login(running, "eu-dublin", ALICE, "not the password")
    dublin = running.cloud.region("eu-dublin")
    dublin.vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    after = scrape(running)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    messages = "borderline_smtp_messages_total"
    assert grew(messages, region="us-east", kind="inbound", result="2xx") == 2
    assert grew(messages, region="us-east", kind="inbound", result="5xx") == 1
    assert grew(messages, region="eu-dublin", kind="relay", result="2xx") == 2
    attempts = "borderline_delivery_attempts_total"
    relayed = {"region": "us-east", "queue": "relay", "destination": "eu-dublin"}
    assert grew(attempts, **relayed, result="delivered") == 2
    assert grew(attempts, **relayed, result="deferred") == 0
    latency = "borderline_delivery_latency_seconds_count"
    assert grew(latency, region="us-east", queue="relay") == 2
    logins = "borderline_logins_total"
    assert grew(logins, region="eu-dublin", protocol="imap", result="ok") == 1
    assert grew(logins, region="eu-dublin", protocol="imap", result="failed") == 1
    releases = "borderline_key_releases_total"
    assert grew(releases, region="eu-dublin", justification="CUSTOMER_INITIATED_ACCESS") == 1
    assert value(after, "borderline_imap_sessions", region="eu-dublin") == 0
    # Read from the stores and logs at the scrape.
    assert value(after, "borderline_queue_depth", region="us-east", queue="relay") == 0
    assert value(after, "borderline_queue_oldest_age_seconds", region="us-east", queue="relay") == 0
    assert value(after, "borderline_store_up", region="eu-dublin") == 1
    assert dublin.log is not None
    assert value(after, "borderline_log_entries", region="eu-dublin") == dublin.log.size >= 1
    assert value(after, "borderline_log_checkpoint_age_seconds", region="eu-dublin") >= 0


@pytest.mark.one_engine("what is logged does not depend on the store")
def test_a_log_line_per_transaction_and_no_personal_data(
    running: RunningCloud, events: io.StringIO
) -> None:
    code, reply = send(running, "us-east", BOB, [ALICE])
    assert code == 250
    queue_id = reply.rsplit(" ", 1)[-1]
    send(running, "us-east", BOB, ["nobody@example.test", "nobody2@example.test"])
    listen = running.cloud.config.region("us-east").smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.ehlo()
        bad_code, _ = client.docmd("MAIL", "TO:<x@example.org>")  # opens no transaction
        assert client.mail(BOB)[0] == 250
        assert client.rcpt("nobody3@example.test")[0] == 550
    # the hang-up ends the transaction: its result is its last refused RCPT
    assert running.drained()
    assert imap_login(running, "eu-dublin", ALICE, PASSWORD)
    lines = [json.loads(line) for line in events.getvalue().splitlines()]
    transactions = [e for e in lines if e["event"] == "smtp.transaction"]
    [accepted] = [e for e in transactions if e["queue_id"] == queue_id]
    assert accepted["region"] == "us-east" and accepted["result"] == "2xx"
    assert (accepted["kind"], accepted["stage"], accepted["recipients"]) == ("inbound", "data", 1)
    [refused] = [e for e in transactions if e["refused"] == 2]
    assert (refused["result"], refused["code"], refused["stage"]) == ("5xx", "550", "rcpt")
    assert refused["queue_id"] is None and refused["level"] == "info"
    [bad_mail] = [e for e in transactions if e["stage"] == "mail"]
    assert (bad_mail["code"], bad_mail["recipients"]) == (str(bad_code), 0) and bad_code >= 500
    [hung_up] = [e for e in transactions if e["refused"] == 1]
    assert (hung_up["result"], hung_up["stage"], hung_up["recipients"]) == ("5xx", "rcpt", 0)
    assert len(transactions) == 5, "each transaction once"
    [relayed] = [e for e in transactions if e["kind"] == "relay"]
    assert relayed["region"] == "eu-dublin" and relayed["result"] == "2xx"
    [attempt] = [e for e in lines if e["event"] == "relay.attempt"]
    assert (attempt["result"], attempt["destination"], attempt["delivered"]) == (
        "delivered",
        "eu-dublin",
        1,
    )
    assert any(e["event"] == "imap.login" and e["result"] == "ok" for e in lines)
    text = events.getvalue()
    for personal in ("@example.test", "127.0.0.1", "the body stays"):
        assert personal not in text, f"{personal!r} logged at INFO"


def test_debug_logging_warns_that_it_holds_personal_data(events: io.StringIO) -> None:
    observe.configure_logging("debug", "text", events)
    observe.login("eu-dublin", "imap", "failed", address=ALICE, ip="192.0.2.1")
    text = events.getvalue()
    assert "DEBUG records carry mail addresses" in text
    assert ALICE in text and "192.0.2.1" in text


@pytest.mark.one_engine("names on the wire and in headers; the store does not matter")
def test_a_region_gives_one_host_name_from_the_config(tmp_path: Path) -> None:
    named = 'custodian = "ie-custodian"\nhost_name = "mx.dublin.example.net"\n'
    config = load_config(write_config(tmp_path, **{'custodian = "ie-custodian"\n': named}))
    with Cloud(config) as cloud:
        cloud.add_account(ALICE, "eu-dublin", PASSWORD)
        running = RunningCloud(cloud)
        try:
            listen = config.region("eu-dublin").smtp
            with smtplib.SMTP(timeout=30) as client:
                code, greeting = client.connect(listen.host, listen.port)
                assert (code, greeting.split()[0]) == (220, b"mx.dublin.example.net")
                assert client.ehlo()[1].split(b"\n")[0] == b"mx.dublin.example.net"
                client.sendmail("x@example.org", [ALICE], b"Subject: hi\r\n\r\nhello\r\n")
            [stored] = inbox(cloud.region("eu-dublin"), ALICE)
        finally:
            running.stop()
    assert b"\tby mx.dublin.example.net" in stored.split(b"\r\n\r\n")[0]
