"""Mail to the Internet, end to end over loopback: submitted in the sender's home region,
DKIM-signed there, queued there encrypted, and delivered by the outbound worker to a real
Postfix found through a real DNS server (Knot), over STARTTLS as MTA-STS requires; delay and
failure reports to the sender; nothing of it in any other region."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage, Message
from pathlib import Path

import psycopg
import pytest

from borderline.cloud import Cloud, Region
from borderline.config import load_config
from borderline.residency import files_containing
from borderline.smtp.outbound import OutboundWorker
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.internet.components import wait_for
from tests.internet.dkimverify import dkimverify
from tests.internet.dns_server import KnotServer, Record, txt
from tests.internet.https_policy import PolicyServer
from tests.internet.postfix import PostfixServer
from tests.internet.testca import TestCA
from tests.net import wait_for_port
from tests.smtp.served import serve

ALICE = "alice@example.test"  # homed in eu-dublin


@pytest.fixture
def config_path(
    tmp_path: Path,
    region_stores: dict[str, str],
    dns_server: KnotServer,
    postfix: PostfixServer,
    policy_server: PolicyServer,
    test_ca: TestCA,
) -> Path:
    """The shared cloud, its mail to the Internet going to the test DNS, the Postfix port
    and the policy server, retried within a second."""
    path = write_config(tmp_path, region_stores)
    path.write_text(
        path.read_text()
        + f'\n[dns]\nservers = ["127.0.0.1"]\nport = {dns_server.port}\n'
        + "\n[outbound]\n"
        + f"smtp_port = {postfix.port}\n"
        + f"mta_sts_port = {policy_server.port}\n"
        + f'ca_file = "{test_ca.ca_file}"\n'
        + "allow_private_addresses = true\n"
        + "connect_timeout_seconds = 5\n"
        + "first_retry_seconds = 0.2\n"
        + "max_retry_seconds = 0.4\n"
        + "max_attempts = 3\n"
        + "delay_warning_seconds = 0.1\n"
    )
    return path


def remote_zone(cloud: Cloud, *extra: Record) -> list[Record]:
    """remote.test's MX is the Postfix; example.test publishes each region's DKIM keys."""
    records = [
        Record("remote", "MX", "10 mx.remote.test."),
        Record("mx.remote", "A", "127.0.0.1"),
        # 127.0.0.2 is loopback too, where nothing listens: connections are refused.
        Record("slow", "MX", "10 mx.slow.test."),
        Record("mx.slow", "A", "127.0.0.2"),
        Record("nomail", "MX", "0 ."),
    ]
    for region in cloud.regions.values():
        for key in region.vault.dkim_keys():
            records.append(txt(f"{key.selector}._domainkey.example", key.record))
    return records + list(extra)


def submit(running: RunningCloud, rcpts: list[str], body: str, subject: str = "out") -> None:
    listen = running.cloud.region("eu-dublin").section.submission
    assert listen is not None
    submit_to(listen.host, listen.port, rcpts, body, subject)


def submit_to(host: str, port: int, rcpts: list[str], body: str, subject: str) -> None:
    """Alice submits a message: STARTTLS, AUTH, then the mail, answered 250."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = ALICE, ", ".join(rcpts), subject
    message.set_content(body)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.starttls(context=context)
        client.login(ALICE, PASSWORD)
        assert client.send_message(message, ALICE, rcpts) == {}


def worker(running: RunningCloud, region_id: str = "eu-dublin") -> OutboundWorker:
    [smtp] = [s for s in running.runtime.smtp if s.region.id == region_id]
    return smtp.outbound


def inbox(region: Region, address: str = ALICE) -> list[bytes]:
    key = region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(address, "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def reports(region: Region, count: int) -> list[Message]:
    """The first `count` delivery reports in Alice's INBOX, once they are there."""
    found: Callable[[], list[bytes] | None] = lambda: (  # noqa: E731
        got if len(got := inbox(region)) >= count else None
    )
    return [
        email.message_from_bytes(m, policy=email.policy.default)
        for m in wait_for(found, 20, f"{count} DSN(s)")
    ]


def per_recipient(report: Message) -> list[Message]:
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    return list(status.get_payload())[1:]


def dump_database(url: str) -> bytes:
    """Every row of every table, as text (binary columns in hex)."""
    with psycopg.connect(url) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return b"".join(
            str(row[0]).encode()
            for table in tables
            for row in db.execute(f'SELECT t::text FROM "{table}" t')
        )


def test_delivered_signed_over_starttls(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer
) -> None:
    dns.publish(remote_zone(running.cloud))
    before = len(postfix.delivered("remote.test"))
    submit(running, ["bob@remote.test", "carol@remote.test"], "hello internet", "Grüße")
    [first, second] = postfix.wait_delivered("remote.test", before + 2)[before:]
    assert b"hello internet" in first and b"hello internet" in second
    assert b"(using TLSv1.3" in first, "Postfix's Received field: it came over TLS"
    done = dkimverify(first, dns.port)
    assert done.returncode == 0, done.stdout + done.stderr
    parsed = email.message_from_bytes(first, policy=email.policy.default)
    assert (
        "s=g1.eu-dublin" in parsed["DKIM-Signature"]
        and "d=example.test" in parsed["DKIM-Signature"]
    )
    assert parsed["Message-ID"] and parsed["Date"], "a submitted message is completed"
    assert running.cloud.region("eu-dublin").store.queued_outbound() == 0


def test_content_stays_in_the_home_region_encrypted(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer, region_stores: dict[str, str]
) -> None:
    """Invariant 10: one message to a reachable and an unreachable domain; the second copy
    waits in Dublin's queue. No byte of it is anywhere in us-east (files or database), and
    Dublin keeps it only as ciphertext."""
    dns.publish(remote_zone(running.cloud))
    marker = "OUTBOUND-MARKER-9c41e7"
    before = len(postfix.delivered("remote.test"))
    submit(running, ["bob@remote.test", "dave@slow.test"], marker)
    [delivered] = postfix.wait_delivered("remote.test", before + 1)[before:]
    assert marker.encode() in delivered
    dublin, us = running.cloud.region("eu-dublin"), running.cloud.region("us-east")
    [waiting] = dublin.store.list_outbound()
    assert waiting.domain == "slow.test" and waiting.rcpts == ("dave@slow.test",)
    assert marker.encode() not in (dublin.store.outbound_blob(waiting.id) or b"")
    assert us.store.queued_outbound() == 0
    assert files_containing(us.root, marker.encode()) == []
    assert files_containing(dublin.root, marker.encode()) == []
    if region_stores:
        for region, url in region_stores.items():
            dump = dump_database(url)
            assert marker.encode() not in dump and marker.encode().hex().encode() not in dump, (
                region
            )


def test_delay_then_failure_reports(running: RunningCloud, dns: KnotServer) -> None:
    """No MX host answers: the sender hears once that it is delayed (RFC 3464 "delayed"),
    then, when the attempts run out, that it failed; the original headers come along."""
    dns.publish(remote_zone(running.cloud))
    submit(running, ["dave@slow.test"], "never arrives", "slow one")
    dublin = running.cloud.region("eu-dublin")
    delayed, failed = reports(dublin, 2)
    [delay] = per_recipient(delayed)
    assert (delay["Action"], delay["Status"]) == ("delayed", "4.4.1")
    assert delay["Final-Recipient"] == "rfc822; dave@slow.test" and delay["Will-Retry-Until"]
    [failure] = per_recipient(failed)
    assert (failure["Action"], failure["Status"]) == ("failed", "4.4.7")
    headers = next(p for p in failed.walk() if p.get_content_type() == "text/rfc822-headers")
    assert "Subject: slow one" in headers.get_content()
    assert wait_for(lambda: dublin.store.queued_outbound() == 0, 10, "the queue to empty")


def test_null_mx_bounces_at_once_and_the_rest_is_delivered(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer
) -> None:
    dns.publish(remote_zone(running.cloud))
    before = len(postfix.delivered("remote.test"))
    submit(running, ["erin@nomail.test", "bob@remote.test"], "mixed")
    postfix.wait_delivered("remote.test", before + 1)
    [bounce] = reports(running.cloud.region("eu-dublin"), 1)
    [failure] = per_recipient(bounce)
    assert (failure["Final-Recipient"], failure["Status"]) == ("rfc822; erin@nomail.test", "5.1.10")


def patient(running: RunningCloud, **settings: float) -> OutboundWorker:
    """Dublin's worker with other retry settings from now on."""
    outbound = worker(running)
    outbound.settings = outbound.settings.model_copy(update=settings)
    return outbound


@pytest.mark.one_engine("the TLS decision happens before the queue is touched again")
def test_mta_sts_enforce_refuses_a_certificate_not_for_the_mx(
    running: RunningCloud,
    dns: KnotServer,
    postfix: PostfixServer,
    policy_server: PolicyServer,
    test_ca: TestCA,
) -> None:
    """mx2.remote.test is the same Postfix, whose certificate is for mx.remote.test. With
    MTA-STS enforce nothing is sent to it, however often it is retried; once the policy is
    `testing`, the next retry delivers it and counts the failure (for TLS-RPT)."""
    outbound = patient(running, max_attempts=1000, delay_warning_seconds=3600)

    def publish(mode: str) -> None:
        policy_server.serve(
            "mta-sts.remote.test",
            test_ca.issue("mta-sts.remote.test"),
            f"version: STSv1\nmode: {mode}\nmx: mx2.remote.test\nmax_age: 86400\n",
        )
        zone = [r for r in remote_zone(running.cloud) if r.name != "remote"]
        dns.publish(
            [
                *zone,
                Record("remote", "MX", "10 mx2.remote.test."),
                Record("mx2.remote", "A", "127.0.0.1"),
                Record("mta-sts.remote", "A", "127.0.0.1"),
                txt("_mta-sts.remote", f"v=STSv1; id={mode}", ttl=1),
            ]
        )

    publish("enforce")
    before = len(postfix.delivered("remote.test"))
    submit(running, ["bob@remote.test"], "not over a bad certificate")
    dublin = running.cloud.region("eu-dublin")
    item = wait_for(
        lambda: next((i for i in dublin.store.list_outbound() if i.attempts >= 3), None),
        20,
        "three failed attempts",
    )
    assert item.last_error is not None and "not valid for 'mx2.remote.test'" in item.last_error
    assert len(postfix.delivered("remote.test")) == before, "nothing sent without valid TLS"
    assert not inbox(dublin), "still being retried: no report yet"
    publish("testing")
    postfix.wait_delivered("remote.test", before + 1)
    assert outbound.tls_failures["remote.test"] >= 1


@pytest.mark.one_engine("what an operator does to the queue is store calls, tested on both")
def test_an_operator_retries_now_and_bounces(running: RunningCloud, dns: KnotServer) -> None:
    patient(running, first_retry_seconds=3600, max_retry_seconds=3600, max_attempts=1000)
    dns.publish(remote_zone(running.cloud))
    submit(running, ["dave@slow.test"], "held up", "held up")
    dublin = running.cloud.region("eu-dublin")
    first = wait_for(
        lambda: next((i for i in dublin.store.list_outbound() if i.attempts), None),
        20,
        "a failed attempt",
    )
    assert first.next_attempt > time.time() + 600, "backed off for most of an hour"
    assert dublin.store.retry_outbound(first.id) == 1
    wait_for(lambda: (i := dublin.store.outbound_item(first.id)) and i.attempts == 2, 20, "a retry")
    assert dublin.store.bounce_outbound(first.id, "the destination is gone for good")
    wait_for(lambda: dublin.store.outbound_item(first.id) is None, 20, "the item to go")
    [delayed, bounced] = reports(dublin, 2)
    assert per_recipient(delayed)[0]["Action"] == "delayed"
    [failure] = per_recipient(bounced)
    assert (failure["Action"], failure["Status"]) == ("failed", "5.0.0")
    assert "the destination is gone for good" in bounced.get_body(("plain",)).get_content()
    assert not dublin.store.retry_outbound(first.id) and not dublin.store.bounce_outbound(
        first.id, "x"
    )


def borderline(config: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "borderline", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.one_engine("DKIM keys live in the vault, whatever the store")
def test_rotated_key_signs_and_borderline_dns_publishes_it(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer, config_path: Path
) -> None:
    """`borderline dkim rotate` while the region serves; `borderline dns --json` gives the
    records, published as they are; mail is then signed by the new generation and verifies
    against them."""
    rotated = json.loads(
        borderline(config_path, "dkim", "rotate", "-r", "eu-dublin", "--in", "0", "--json")
    )
    assert rotated["selector"] == "g2.eu-dublin" and rotated["signing"]
    [domain] = json.loads(borderline(config_path, "dns", "--json"))
    names = {(r["name"], r["type"]) for r in domain["records"]}
    assert {
        ("g1.eu-dublin._domainkey.example.test", "TXT"),
        ("g2.eu-dublin._domainkey.example.test", "TXT"),
        ("eu-dublin._domainkey.example.test", "TXT"),
        ("g1.us-east._domainkey.example.test", "TXT"),
        ("_dmarc.example.test", "TXT"),
        ("_mta-sts.example.test", "TXT"),
        ("_smtp._tls.example.test", "TXT"),
        ("example.test", "MX"),
    } <= names
    published = [
        txt(f"{r['name']}.", r["value"])
        if r["type"] == "TXT"
        else Record(f"{r['name']}.", r["type"], r["value"])
        for r in domain["records"]
    ]
    dns.publish([r for r in remote_zone(running.cloud) if "_domainkey" not in r.name] + published)
    before = len(postfix.delivered("remote.test"))
    submit(running, ["bob@remote.test"], "signed by the new key")
    [delivered] = postfix.wait_delivered("remote.test", before + 1)[before:]
    assert b"s=g2.eu-dublin;" in delivered.replace(b"\r\n", b"").replace(b" ", b"")
    done = dkimverify(delivered, dns.port)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.one_engine("what a destination offers is decided per connection, not stored")
def test_smtputf8_and_8bitmime_follow_what_the_destination_offers(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer
) -> None:
    """Postfix offers SMTPUTF8: a UTF-8 address and header arrive as they are. Once it
    stops offering SMTPUTF8 and 8BITMIME, such mail is refused before sending it, and the
    sender is told why."""
    dns.publish(remote_zone(running.cloud))
    before = len(postfix.delivered("remote.test"))
    submit(running, ["dörte@remote.test"], "grüße", "Grüße aus Dublin")
    [delivered] = postfix.wait_delivered("remote.test", before + 1)[before:]
    assert "Subject: Grüße aus Dublin".encode() in delivered
    assert dkimverify(delivered, dns.port).returncode == 0
    postfix.postconf(smtpd_discard_ehlo_keywords="smtputf8,8bitmime")
    try:
        submit(running, ["dörte@remote.test"], "plain", "ascii")
        submit(running, ["bob@remote.test"], "grüße, 8-bit", "ascii")
        dublin = running.cloud.region("eu-dublin")
        statuses = sorted(per_recipient(r)[0]["Status"] for r in reports(dublin, 2))
        assert statuses == ["5.6.3", "5.6.7"]
    finally:
        postfix.postconf(smtpd_discard_ehlo_keywords="")
    assert len(postfix.delivered("remote.test")) == before + 1


@pytest.mark.one_engine("connection reuse is the worker's, whatever the store")
def test_queued_mail_shares_connections_within_the_limits(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer
) -> None:
    """Six messages to one domain, queued while its MX is unreachable, then sent on one
    pass: one connection at a time for the domain, four messages per connection."""
    patient(
        running,
        connections_per_domain=1,
        messages_per_connection=4,
        first_retry_seconds=3600,
        max_retry_seconds=3600,
        max_attempts=1000,
    )
    slow = [r for r in remote_zone(running.cloud) if r.name != "mx.remote"]
    dns.publish([*slow, Record("mx.remote", "A", "127.0.0.2", ttl=1)])
    dublin = running.cloud.region("eu-dublin")
    for n in range(6):
        submit(running, ["bob@remote.test"], f"batch {n}")
    wait_for(lambda: [i.attempts for i in dublin.store.list_outbound()] == [1] * 6, 20, "tries")
    dns.publish(remote_zone(running.cloud))
    time.sleep(1.1)  # the unreachable address's TTL
    logged = len(postfix.log_lines())
    before = len(postfix.delivered("remote.test"))
    assert dublin.store.retry_outbound() == 6
    postfix.wait_delivered("remote.test", before + 6)

    def carried() -> list[int] | None:
        """Messages per finished connection, once all six are accounted for (a connection
        that could carry more is kept open for two seconds first)."""
        logged_now = [line for line in postfix.log_lines()[logged:] if "postfix/smtpd[" in line]
        counts = [int(m) for line in logged_now for m in re.findall(r" mail=(\d+)", line)]
        return counts if sum(counts) == 6 else None

    assert max(wait_for(carried, 20, "the connections to close")) == 4
    smtpd = [line for line in postfix.log_lines()[logged:] if "postfix/smtpd[" in line]
    events = [
        "open" if ": connect from" in line else "close"
        for line in smtpd
        if ": connect from" in line or ": disconnect from" in line
    ]
    assert events == ["open", "close"] * (len(events) // 2), "one connection at a time"


@pytest.mark.one_engine("the queue commits in the delivery transaction, durable on both engines")
def test_queued_mail_survives_sigkill_and_leaves_after_restart(
    config_path: Path, dns: KnotServer, postfix: PostfixServer
) -> None:
    """Answered 250 while no MX host answers, the server killed with SIGKILL: restarted,
    it delivers every one of them, once."""
    text = config_path.read_text().replace("max_attempts = 3", "max_attempts = 1000")
    config_path.write_text(
        text.replace("delay_warning_seconds = 0.1", "delay_warning_seconds = 3600")
    )
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account(ALICE, "eu-dublin", PASSWORD)
        unreachable = [r for r in remote_zone(cloud) if r.name != "mx.remote"]
    dns.publish([*unreachable, Record("mx.remote", "A", "127.0.0.2", ttl=1)])
    submission = config.region("eu-dublin").submission
    assert submission is not None
    server = serve(config_path)
    try:
        wait_for_port(submission.port)
        with Cloud(config) as cloud:
            zone = remote_zone(cloud)
        for n in range(5):
            submit_to(
                submission.host, submission.port, ["bob@remote.test"], f"kept {n}", f"kept {n}"
            )
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        dns.publish(zone)
        time.sleep(1.1)  # the unreachable address's TTL, in a resolver cache if any
        before = len(postfix.delivered("remote.test"))
        server = serve(config_path)
        got = postfix.wait_delivered("remote.test", before + 5)[before:]
        subjects = sorted(email.message_from_bytes(m)["Subject"] for m in got)
        assert subjects == [f"kept {n}" for n in range(5)]
        time.sleep(1)
        assert len(postfix.delivered("remote.test")) == before + 5, "each once"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


@pytest.mark.one_engine("how passes are scheduled is the worker's, whatever the store")
def test_a_silent_destination_holds_up_only_its_own_mail(
    running: RunningCloud, dns: KnotServer, postfix: PostfixServer
) -> None:
    """tarpit.test's MX accepts the connection and never says a word (the greeting may take
    5 minutes, RFC 5321 4.5.3.2): mail to other domains queued after it leaves at once."""
    with socket.socket() as tarpit:
        tarpit.bind(("127.0.0.3", postfix.port))
        tarpit.listen()
        dns.publish(
            remote_zone(
                running.cloud,
                Record("tarpit", "MX", "10 mx.tarpit.test."),
                Record("mx.tarpit", "A", "127.0.0.3"),
            )
        )
        submit(running, ["carl@tarpit.test"], "into the tarpit")
        wait_for(lambda: worker(running)._busy.get("tarpit.test"), 10, "the tarpit delivery")
        before = len(postfix.delivered("remote.test"))
        submit(running, ["bob@remote.test"], "past the tarpit")
        [delivered] = postfix.wait_delivered("remote.test", before + 1, timeout=20)[before:]
        assert b"past the tarpit" in delivered
        assert "tarpit.test" in worker(running)._busy, "still waiting for its greeting"
