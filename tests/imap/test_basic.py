"""Core IMAP over real loopback sessions with Python's imaplib."""

from __future__ import annotations

import imaplib
import json
from datetime import date

import pytest

from borderline.cloud import Region
from borderline.residency import files_containing
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, client_tls, connect, fill, make_message


def access_events(region: Region) -> list[dict[str, str]]:
    log = region.transparency_log
    return [json.loads(log.entry(i)) for i in range(log.size)]


def test_capability_login_select_fetch(running: RunningCloud, alice: imaplib.IMAP4) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(i) for i in range(3)])
    assert {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "LITERAL+"} <= set(alice.capabilities)
    typ, data = alice.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    typ, data = alice.fetch("1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    subjects = [part[1] for part in data if isinstance(part, tuple)]
    assert subjects == [f"Subject: message {i}\r\n\r\n".encode() for i in range(3)]
    typ, data = alice.uid("FETCH", "2", "(BODY.PEEK[])")
    assert typ == "OK"
    assert isinstance(data[0], tuple) and data[0][1] == make_message(1)
    typ, data = alice.fetch("1", "(body.peek[header.fields (subject)])")
    assert isinstance(data[0], tuple)
    assert data[0][0] == b"1 (BODY[HEADER.FIELDS (SUBJECT)] {22}"
    typ, data = alice.fetch("3", "(FLAGS)")
    assert data == [b"3 (FLAGS (\\Recent))"], "PEEK must not set \\Seen"


def test_first_content_read_is_one_logged_release(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(i) for i in range(2)])
    before = len(access_events(region))
    client = connect(running)
    client.login("alice@example.test", PASSWORD)
    client.select("INBOX")
    client.fetch("1:*", "(FLAGS UID INTERNALDATE RFC822.SIZE)")
    client.list()
    assert len(access_events(region)) == before, "no content read yet, so no key release"
    client.fetch("1", "(ENVELOPE)")
    client.fetch("2", "(BODY.PEEK[TEXT])")
    client.logout()
    events = access_events(region)[before:]
    assert len(events) == 1
    assert events[0]["justification"] == "CUSTOMER_INITIATED_ACCESS"
    # The log names no one; the principal is in the record only the account holder opens.
    assert "principal" not in events[0]
    [record] = region.vault.access_records("alice@example.test", date.today())
    assert record.commitment == events[0]["commitment"]
    assert record.fields["principal"] == "imap:alice@example.test@127.0.0.1"


def test_login_at_a_foreign_region_is_a_referral(running: RunningCloud) -> None:
    region = running.cloud.region("us-east")
    before = len(access_events(region))
    client = connect(running, "us-east")
    with pytest.raises(imaplib.IMAP4.error) as error:
        client.login("alice@example.test", PASSWORD)
    dublin = running.cloud.region("eu-dublin").section.imap
    assert dublin is not None
    url = f"imap://alice%40example.test@{dublin.host}:{dublin.port}/"
    assert f"[REFERRAL {url}]".encode() in str(error.value).encode()
    client.logout()
    raw = Raw(running, "us-east")
    [reply] = raw.command(
        b"a1", b"LOGIN alice@example.test {%d+}\r\n%s" % (len(PASSWORD), PASSWORD.encode())
    )
    assert reply.startswith(b"a1 NO [REFERRAL imap://")
    [reply] = raw.command(b"a2", b"SELECT INBOX")
    assert reply.startswith(b"a2 BAD") and b"LOGIN first" in reply
    raw.close()
    assert len(access_events(region)) == before


def test_bad_password_and_unknown_user_are_no(running: RunningCloud) -> None:
    client = connect(running)
    for user, password in (("alice@example.test", "wrong"), ("nobody@example.test", PASSWORD)):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(user, password)
    client.login("alice@example.test", PASSWORD)
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_starttls_and_implicit_tls(running: RunningCloud) -> None:
    client = connect(running)
    assert "STARTTLS" in client.capabilities
    client.starttls(client_tls())
    client.login("alice@example.test", PASSWORD)
    assert client.select("Sent")[0] == "OK"
    client.logout()
    listen = running.cloud.region("eu-dublin").section.imaps
    assert listen is not None
    secure = imaplib.IMAP4_SSL(listen.host, listen.port, ssl_context=client_tls(), timeout=30)
    assert "STARTTLS" not in secure.capabilities
    secure.login("alice@example.test", PASSWORD)
    assert secure.select("INBOX")[0] == "OK"
    secure.logout()


def test_authenticate_plain_with_initial_response(running: RunningCloud) -> None:
    client = connect(running)
    assert "SASL-IR" in client.capabilities
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0alice@example.test\0{PASSWORD}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_uidplus_copyuid_and_move(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(i) for i in range(4)])
    validity = region.store.mailbox("alice@example.test", "Trash").uidvalidity
    raw = Raw(running)
    raw.command(b"a", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    raw.command(b"b", b"SELECT INBOX")
    assert raw.command(b"c", b"UID COPY 2:3 Trash") == [
        b"c OK [COPYUID %d 2:3 1:2] UID COPY completed\r\n" % validity
    ]
    assert raw.command(b"d", b"UID MOVE 1,4 Trash") == [
        b"* OK [COPYUID %d 1,4 3:4]\r\n" % validity,
        b"* 4 EXPUNGE\r\n",
        b"* 1 EXPUNGE\r\n",
        b"d OK UID MOVE completed\r\n",
    ]
    assert raw.command(b"e", b"UID SEARCH ALL")[0] == b"* SEARCH 2 3\r\n"
    assert raw.command(b"f", b"UID EXPUNGE 2") == [b"f OK UID EXPUNGE completed\r\n"]
    assert raw.command(b"g", b"APPEND Trash (\\Seen) {5+}\r\nhello") == [
        b"g OK [APPENDUID %d 5] APPEND completed\r\n" % validity
    ]
    raw.close()


def test_appended_mail_is_encrypted_at_rest_in_the_home_region_only(running: RunningCloud) -> None:
    marker = b"IMAP-APPEND-MARKER-5e2b"
    raw = Raw(running)
    raw.command(b"a", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    message = b"Subject: " + marker + b"\r\n\r\n" + marker + b"\r\n"
    assert raw.command(b"b", b"APPEND Drafts {%d+}\r\n%s" % (len(message), message))[-1].startswith(
        b"b OK [APPENDUID"
    )
    raw.command(b"c", b"SELECT Drafts")
    fetched = b"".join(raw.command(b"d", b"FETCH 1 BODY.PEEK[]"))
    assert message in fetched
    raw.close()
    assert files_containing(running.cloud.config.cloud.data_dir, marker) == []
