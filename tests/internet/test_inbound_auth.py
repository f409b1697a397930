"""Sender authentication on Borderline's MX, end to end: a real Postfix sends "Internet" mail
into it, a real Knot DNS serves the senders' SPF, DKIM and DMARC records."""

from __future__ import annotations

from pathlib import Path

import authres
import pytest

from borderline import dkimsign
from borderline.cloud import Region
from borderline.vault import Justification
from tests.conftest import RunningCloud, write_config
from tests.internet.dns_server import KnotServer, txt
from tests.internet.postfix import PostfixServer
from tests.internet.test_mailauth import RSA, arc_sealed

KEY = dkimsign.generate_key("ed25519")
AUTHSERV_ID = "example.test"  # the cloud's first domain


@pytest.fixture
def config_path(tmp_path: Path, region_stores: dict[str, str], dns_server: KnotServer) -> Path:
    inbound = (
        f'[dns]\nservers = ["127.0.0.1"]\nport = {dns_server.port}\n\n'
        '[inbound]\ntrusted_arc_sealers = ["List.test"]\n\n[api]\n'
    )
    return write_config(tmp_path, region_stores, **{"\n[api]\n": "\n" + inbound})


def _message(sender: str, rcpt: str, marker: str, extra: str = "") -> bytes:
    domain = sender.rpartition("@")[2]
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {marker}\r\n"
        f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{marker}@{domain}>\r\n"
        f"{extra}\r\n{marker}\r\n"
    ).encode()


def _mail(region: Region, address: str, mailbox: str) -> dict[str, bytes]:
    """The account's messages in the mailbox, by subject."""
    key = region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(address, mailbox)
    found = {}
    for m in region.store.messages(box.id):
        raw = key.decrypt(region.store.blob(m.blob_id))
        subject = raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0]
        found[subject.decode()] = raw
    return found


def _results(raw: bytes) -> dict[str, str]:
    """Our Authentication-Results (exactly one), parsed back by authres: method -> result."""
    fields = [
        authres.AuthenticationResultsHeader.parse(line.decode())
        for line in raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").split(b"\r\n")
        if line.lower().startswith(b"authentication-results:")
    ]
    [ours] = [field for field in fields if field.authserv_id == AUTHSERV_ID]
    return {result.method: result.result for result in ours.results}


@pytest.mark.one_engine("sender authentication is the same over either store engine")
def test_spf_dkim_dmarc_pass_fail_and_none_through_a_real_postfix(
    running: RunningCloud, postfix: PostfixServer, dns: KnotServer
) -> None:
    dublin_mx = running.cloud.region("eu-dublin").section.smtp
    postfix.route("example.test", dublin_mx.host, dublin_mx.port)
    dns.publish(
        [
            # signed.test: SPF allows the Postfix's address, DKIM signs, DMARC p=reject.
            txt("signed", "v=spf1 ip4:127.0.0.1 -all"),
            txt("eu-dublin._domainkey.signed", dkimsign.public_record(KEY)),
            txt("_dmarc.signed", "v=DMARC1; p=reject"),
            # strict.test and careful.test: SPF says not from here, nothing signed.
            txt("strict", "v=spf1 ip4:192.0.2.1 -all"),
            txt("_dmarc.strict", "v=DMARC1; p=reject"),
            txt("careful", "v=spf1 ip4:192.0.2.1 -all"),
            txt("_dmarc.careful", "v=DMARC1; p=quarantine"),
            # plain.test publishes nothing; list.test seals what it forwards with ARC.
            txt("arc._domainkey.list", dkimsign.public_record(RSA)),
        ]
    )
    forged = f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=strict.test\r\n"
    passing = dkimsign.sign(
        _message("alice@signed.test", "alice@example.test", "PASS-7e1", forged),
        domain="signed.test",
        selector="eu-dublin",
        private_key=KEY,
    )
    sent = {
        "pass": postfix.send(passing, "alice@signed.test", ["alice@example.test"]),
        "reject": postfix.send(
            _message("ceo@strict.test", "alice@example.test", "REJECT-2b9"),
            "ceo@strict.test",
            ["alice@example.test"],
        ),
        # bob is homed in us-east: the verdict is sealed with the message and kept there.
        "quarantine": postfix.send(
            _message("news@careful.test", "bob@example.test", "JUNK-44c"),
            "news@careful.test",
            ["bob@example.test"],
        ),
        # A list forwarded strict.test's mail (so SPF fails): its ARC seal, trusted here,
        # forgives the DMARC failure.
        "forwarded": postfix.send(
            arc_sealed(_message("ceo@strict.test", "alice@example.test", "ARC-3f8"), "list.test"),
            "ceo@strict.test",
            ["alice@example.test"],
        ),
        "none": postfix.send(
            _message("x@plain.test", "alice@example.test", "NONE-9d0"),
            "x@plain.test",
            ["alice@example.test"],
        ),
    }
    outcomes = {case: postfix.wait_outcome(queue_id) for case, queue_id in sent.items()}
    assert {case: o.status for case, o in outcomes.items()} == {
        "pass": "sent",
        "reject": "bounced",
        "quarantine": "sent",
        "forwarded": "sent",
        "none": "sent",
    }
    assert outcomes["reject"].dsn == "5.7.1"
    assert "DMARC policy of strict.test" in outcomes["reject"].detail
    assert running.drained()

    dublin, us = running.cloud.region("eu-dublin"), running.cloud.region("us-east")
    inbox = _mail(dublin, "alice@example.test", "INBOX")
    assert sorted(inbox) == ["ARC-3f8", "NONE-9d0", "PASS-7e1"], "the rejected one is not stored"
    assert _results(inbox["PASS-7e1"]) == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
        "arc": "none",
    }, "the forged header claiming to be ours is gone, ours is there"
    assert _results(inbox["NONE-9d0"]) == {
        "spf": "none",
        "dkim": "none",
        "dmarc": "none",
        "arc": "none",
    }
    forwarded = _results(inbox["ARC-3f8"])
    assert (forwarded["dmarc"], forwarded["arc"]) == ("fail", "pass")
    assert _mail(us, "bob@example.test", "INBOX") == {}
    junk = _mail(us, "bob@example.test", "Junk")
    assert list(junk) == ["JUNK-44c"]
    assert _results(junk["JUNK-44c"])["dmarc"] == "fail"
