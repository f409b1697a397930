"""SMTP over real loopback sessions: delivery, sealing across regions, and every reject path."""

from __future__ import annotations

import base64
import email
import select
import smtplib
import ssl
from email.message import EmailMessage
from typing import NoReturn

import pytest

from borderline.cloud import Region
from borderline.delivery import Envelope
from borderline.residency import files_containing
from borderline.store.sqlite import SqliteEngine
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.test_mime import many_parts


def message(sender: str, rcpt: str, body: str, subject: str = "test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg.set_content(body)
    return msg


def mx(running: RunningCloud, region_id: str) -> smtplib.SMTP:
    listen = running.cloud.region(region_id).section.smtp
    return smtplib.SMTP(listen.host, listen.port, timeout=30)


def inbox(region: Region, address: str) -> list[bytes]:
    key = region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(address, "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def test_local_delivery_is_encrypted_at_rest(running: RunningCloud) -> None:
    marker = "LOCAL-MARKER-7d1f0c"
    with mx(running, "eu-dublin") as client:
        client.send_message(message("x@example.org", "alice@example.test", marker))
    dublin = running.cloud.region("eu-dublin")
    [stored] = inbox(dublin, "alice@example.test")
    assert marker.encode() in stored
    assert stored.startswith(b"Return-Path: <x@example.org>\r\nReceived: from ")
    # Encrypted at rest: the home region's own files hold no plaintext either.
    assert files_containing(dublin.root, marker.encode()) == []


def test_cross_region_mail_is_sealed_and_relayed_home(running: RunningCloud) -> None:
    marker = "SEALED-MARKER-41aa93"
    with mx(running, "us-east") as client:
        refused = client.send_message(message("x@example.org", "alice@example.test", marker))
    assert refused == {}
    assert running.drained()
    us, dublin = running.cloud.region("us-east"), running.cloud.region("eu-dublin")
    [stored] = inbox(dublin, "alice@example.test")
    assert marker.encode() in stored
    assert email.message_from_bytes(stored)["Subject"] == "test"
    # Invariants 1 and 2: not one byte of plaintext in the accepting region, nor the directory.
    assert files_containing(us.root, marker.encode()) == []
    assert files_containing(running.cloud.config.cloud.data_dir, marker.encode()) == []


def test_unknown_recipient_is_550_at_rcpt(running: RunningCloud) -> None:
    with mx(running, "us-east") as client:
        client.ehlo()
        client.mail("x@example.org")
        code, text = client.rcpt("nobody@example.test")
        assert code == 550 and b"no such user" in text
        code, text = client.rcpt("someone@elsewhere.org")
        assert code == 550 and b"Relaying denied" in text


def test_oversize_message_is_552(running: RunningCloud) -> None:
    limit = running.cloud.config.cloud.max_message_size
    with mx(running, "eu-dublin") as client:
        client.ehlo()
        code, _ = client.mail("x@example.org", [f"SIZE={limit + 1}"])
        assert code == 552
    with mx(running, "eu-dublin") as client, pytest.raises(smtplib.SMTPDataError) as error:
        client.helo()  # plain SMTP: no SIZE declared, so the limit bites during DATA
        client.sendmail("x@example.org", ["alice@example.test"], b"0123456789\r\n" * (limit // 10))
    assert error.value.smtp_code == 552
    dublin = running.cloud.region("eu-dublin")
    assert dublin.store.mailbox("alice@example.test", "INBOX").messages == 0


@pytest.mark.one_engine("the failure is an SQLite pragma; test_postgres_cloud breaks PostgreSQL")
def test_store_failure_is_451_never_250(running: RunningCloud) -> None:
    dublin = running.cloud.region("eu-dublin")
    assert isinstance(dublin.store.engine, SqliteEngine)
    writer = dublin.store.engine._writer
    writer.execute("PRAGMA query_only = ON")
    try:
        with mx(running, "eu-dublin") as client, pytest.raises(smtplib.SMTPDataError) as error:
            client.send_message(message("x@example.org", "alice@example.test", "lost?"))
        assert error.value.smtp_code == 451
    finally:
        writer.execute("PRAGMA query_only = OFF")
    assert dublin.store.mailbox("alice@example.test", "INBOX").messages == 0


def test_a_message_that_cannot_be_planned_is_451_and_logged_with_its_traceback(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug planning one message answers 451 for it; the log keeps the traceback, the one
    clue to what went wrong (a bytearray that reached a set once showed only its message)."""
    dublin = running.cloud.region("eu-dublin")

    def broken(envelope: Envelope, consume: bool = False) -> NoReturn:
        raise TypeError("unhashable type: 'bytearray'")

    monkeypatch.setattr(dublin.planner, "plan", broken)
    with mx(running, "eu-dublin") as client, pytest.raises(smtplib.SMTPDataError) as error:
        client.send_message(message("x@example.org", "alice@example.test", "planned?"))
    assert error.value.smtp_code == 451
    [record] = [r for r in caplog.records if "message not committed" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is TypeError


def _submission(running: RunningCloud, region_id: str) -> smtplib.SMTP:
    listen = running.cloud.region(region_id).section.submission
    assert listen is not None
    return smtplib.SMTP(listen.host, listen.port, timeout=30)


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_submission_needs_starttls_and_auth(running: RunningCloud) -> None:
    with _submission(running, "eu-dublin") as client:
        client.ehlo()
        assert not client.has_extn("auth"), "AUTH must not be offered before TLS"
        code, _ = client.mail("alice@example.test")
        assert code == 530
        client.starttls(context=_client_tls())
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice@example.test", "wrong password")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bob@example.test", PASSWORD)  # homed in us-east, not local here
        client.login("alice@example.test", PASSWORD)
        code, _ = client.mail("bob@example.test")
        assert code == 553, "the envelope sender must be the authenticated account"
        client.rset()
        client.send_message(message("alice@example.test", "bob@example.test", "from dublin"))
    assert running.drained()
    [stored] = inbox(running.cloud.region("us-east"), "bob@example.test")
    assert b"from dublin" in stored
    assert b"with ESMTPSA" in stored


def test_multi_recipient_message_splits_by_home_region(running: RunningCloud) -> None:
    running.cloud.add_account("carol@example.test", "us-east", PASSWORD)
    msg = message("x@example.org", "alice@example.test, bob@example.test", "to three")
    with mx(running, "us-east") as client:
        client.send_message(
            msg, to_addrs=["alice@example.test", "bob@example.test", "carol@example.test"]
        )
    assert running.drained()
    assert len(inbox(running.cloud.region("eu-dublin"), "alice@example.test")) == 1
    assert len(inbox(running.cloud.region("us-east"), "bob@example.test")) == 1
    assert len(inbox(running.cloud.region("us-east"), "carol@example.test")) == 1


def test_forged_relay_envelope_is_rejected(running: RunningCloud) -> None:
    us = running.cloud.region("us-east")
    envelope = Envelope("x@example.org", ("alice@example.test",), b"Subject: hi\r\n\r\nok", 0.0)
    sealed = us.planner.plan(envelope).relays[0].sealed
    signed = us.planner.signed_relay("eu-dublin", lambda room: bytearray(room) + sealed)
    assert signed is not None
    genuine = b"".join(us.planner.relay_pieces("eu-dublin", *signed))
    forged = genuine.replace(b"from=us-east", b"from=eu-dublin")
    with mx(running, "eu-dublin") as client, pytest.raises(smtplib.SMTPDataError) as error:
        client.sendmail("x@example.org", ["alice@example.test"], forged)
    assert error.value.smtp_code == 554
    with mx(running, "eu-dublin") as client:
        client.sendmail("x@example.org", ["alice@example.test"], genuine)
    [stored] = inbox(running.cloud.region("eu-dublin"), "alice@example.test")
    assert stored.endswith(b"\r\n\r\nok")


def _auth(client: smtplib.SMTP, mechanism: str, password: str) -> int:
    client.user, client.password = "alice@example.test", password
    try:
        client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
    except smtplib.SMTPAuthenticationError as refused:
        return refused.smtp_code
    return 235


def _logged_in(running: RunningCloud) -> smtplib.SMTP:
    """A submission session of alice at her home region, with a local recipient to send to."""
    running.cloud.add_account("carol@example.test", "eu-dublin", PASSWORD)
    client = _submission(running, "eu-dublin")
    client.starttls(context=_client_tls())
    client.ehlo()
    client.login("alice@example.test", PASSWORD)
    return client


def _hung_up(client: smtplib.SMTP) -> bool:
    try:
        client.noop()
    except smtplib.SMTPServerDisconnected:
        return True
    return False


def test_a_deleted_accounts_session_sends_nothing_more(running: RunningCloud) -> None:
    client = _logged_in(running)
    running.cloud.delete_account("ALICE@example.test")  # as typed: sessions know it lowercased
    code, text = client.mail("alice@example.test")
    assert (code, text) == (421, b"4.7.0 eu-dublin.example.test This account no longer exists")
    assert _hung_up(client)
    client.close()
    carol = running.cloud.region("eu-dublin").store.mailbox("carol@example.test", "INBOX")
    assert carol.messages == 0


@pytest.mark.usefixtures("deleted_while_checked")
def test_a_submission_login_that_an_account_deletion_overtakes_fails(
    running: RunningCloud,
) -> None:
    """As for IMAP: an account deleted while its password was checked was logged into, and
    the session counted as one of the address's next owner."""
    client = _submission(running, "eu-dublin")
    client.starttls(context=_client_tls())
    client.ehlo()
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login("alice@example.test", PASSWORD)
    client.close()


def test_a_message_whose_account_is_deleted_before_its_end_is_not_committed(
    running: RunningCloud,
) -> None:
    """Even once the address is a new account's, whose From the message may carry."""
    client = _logged_in(running)
    assert client.mail("alice@example.test")[0] == 250
    assert client.rcpt("carol@example.test")[0] == 250
    assert client.docmd("DATA")[0] == 354
    running.cloud.delete_account("alice@example.test")
    running.cloud.add_account("alice@example.test", "eu-dublin", "the new owner's password")
    content = message("alice@example.test", "carol@example.test", "sent as the new owner?")
    client.send(content.as_bytes().replace(b"\n", b"\r\n") + b".\r\n")
    assert client.getreply()[0] == 421
    assert _hung_up(client)
    client.close()
    carol = running.cloud.region("eu-dublin").store.mailbox("carol@example.test", "INBOX")
    assert carol.messages == 0


def test_submission_logins_are_throttled(running: RunningCloud) -> None:
    smtp = running.runtime.smtp[[r.id for r in running.cloud.regions.values()].index("eu-dublin")]
    smtp.throttle.base_delay, smtp.throttle.lockout = 0.01, 3
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        # A client falling back from PLAIN to LOGIN with the same wrong password guessed
        # once: two distinct guesses here, under the lockout of three.
        for mechanism, password in (("PLAIN", "guess"), ("LOGIN", "guess"), ("PLAIN", "guess")):
            assert _auth(client, mechanism, password) == 535
        assert _auth(client, "LOGIN", "guess 2") == 535
        assert _auth(client, "PLAIN", PASSWORD) == 235
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.ehlo()
        for mechanism, password in (("PLAIN", "a"), ("LOGIN", "b"), ("PLAIN", "c")):
            assert _auth(client, mechanism, password) == 535  # both count on one throttle
        assert _auth(client, "LOGIN", PASSWORD) == 454, "locked out even with the right one"
    smtp.throttle.window = 0.0  # the window passes
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.login("alice@example.test", PASSWORD)


def test_plain_authorization_identity_must_be_the_user(running: RunningCloud) -> None:
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.ehlo()
        other = base64.b64encode(f"bob@example.test\0alice@example.test\0{PASSWORD}".encode())
        code, text = client.docmd("AUTH", "PLAIN " + other.decode())
        assert (code, text) == (535, b"5.7.8 Authorization identity mismatch")
        code, _ = client.docmd("AUTH", "PLAIN not-base64!")
        assert code == 501
        same = base64.b64encode(f"alice@example.test\0alice@example.test\0{PASSWORD}".encode())
        code, _ = client.docmd("AUTH", "PLAIN " + same.decode())
        assert code == 235


def test_submission_from_and_sender_must_be_the_account(running: RunningCloud) -> None:
    """RFC 5322 author fields on submission: every address in From, and Sender, must be
    one the account owns; otherwise 550 5.7.1 and nothing is sent."""
    refused = {
        "From: bob@example.test": "From address <bob@example.test> is not yours",
        "From: Alice <alice@example.test>, bob@example.test": "<bob@example.test>",
        "From: alice@example.test\r\nSender: bob@example.test": "Sender address <bob@",
        "From: alice@example.test\r\nFrom: bob@example.test": "exactly one From",
        "To: bob@example.test": "exactly one From",
        "From: undisclosed-recipients:;": "names no address",
        "From: =?utf-8?q?Alice?= <alice@example.test.evil>": "<alice@example.test.evil>",
    }
    with _submission(running, "eu-dublin") as client:
        client.starttls(context=_client_tls())
        client.login("alice@example.test", PASSWORD)
        for head, why in refused.items():
            with pytest.raises(smtplib.SMTPDataError) as error:
                client.sendmail(
                    "alice@example.test", ["bob@example.test"], f"{head}\r\n\r\nforged?\r\n"
                )
            assert error.value.smtp_code == 550, head
            assert error.value.smtp_error.startswith(b"5.7.1 ") and why.encode() in (
                error.value.smtp_error
            ), (head, error.value.smtp_error)
        client.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: Alice <ALICE@example.test>\r\nSender: alice@example.test\r\n\r\nmine\r\n",
        )
    assert running.drained()
    [stored] = inbox(running.cloud.region("us-east"), "bob@example.test")
    assert stored.endswith(b"\r\n\r\nmine\r\n")


def test_a_costly_message_holds_up_no_other_senders_mail(running: RunningCloud) -> None:
    """Issue 15 item 3 on the MX: what IMAP reads of a message of 10,000 parts (the MIME
    limit) takes seconds to compute. Computed in the commit, it held up the 250 of every
    message accepted meanwhile; now it delays its own sender only."""
    costly = mx(running, "eu-dublin")
    costly.ehlo()
    costly.mail("x@example.org")
    costly.rcpt("alice@example.test")
    assert costly.docmd("DATA")[0] == 354
    assert costly.sock is not None
    costly.send(many_parts(10_000) + b".\r\n")
    with mx(running, "eu-dublin") as other:
        other.send_message(message("y@example.org", "alice@example.test", "meanwhile"))
    assert not select.select([costly.sock], [], [], 0)[0], "the other 250 waited for it"
    assert costly.getreply()[0] == 250
    costly.quit()
    stored = inbox(running.cloud.region("eu-dublin"), "alice@example.test")
    assert [m.count(b"\r\n--b\r\n") for m in stored] == [0, 10_000]


def test_mail_is_stored_with_its_summary_on_either_path(running: RunningCloud) -> None:
    """A message of one part is summarized inside the group commit, one of several parts by
    the session that accepted it (cheap_to_summarize): both are stored with one."""
    with mx(running, "eu-dublin") as client:
        client.send_message(message("y@example.org", "alice@example.test", "ordinary"))
        client.sendmail("z@example.org", ["alice@example.test"], many_parts(3))
    region = running.cloud.region("eu-dublin")
    mailbox = region.store.mailbox("alice@example.test", "INBOX")
    assert mailbox is not None
    messages = [(m.uid, m.blob_id) for m in region.store.messages(mailbox.id)]
    assert len(messages) == 2
    stored = region.store.summaries(mailbox.id, messages)
    assert sorted(stored.singles) == sorted(blob_id for _, blob_id in messages)
