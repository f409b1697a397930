"""A cloud whose eu-dublin region keeps its mail in PostgreSQL, driven over real SMTP."""

from __future__ import annotations

import select
import smtplib
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest

from borderline.cloud import Region
from borderline.residency import files_containing
from borderline.store import PostgresMailStore
from borderline.vault import Justification
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.imap.conftest import Raw
from tests.pg import PostgresServer
from tests.store.conftest import ALICE


@pytest.fixture
def config_path(tmp_path: Path, pg_url: str) -> Path:
    """The shared cloud fixtures (tests/conftest.py), with eu-dublin on PostgreSQL, and
    us-east on SQLite. A store call gives up after 1 s."""
    region = 'custodian = "ie-custodian"\n'
    return write_config(tmp_path, **{region: f'{region}store = "{pg_url}"\nstore_timeout = 1\n'})


def send(running: RunningCloud, region_id: str, marker: str, rcpt: str = ALICE) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "x@example.org", rcpt, "pg"
    msg.set_content(marker)
    listen = running.cloud.region(region_id).section.smtp
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        assert client.send_message(msg) == {}


def inbox(region: Region) -> list[bytes]:
    key = region.vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    box = region.store.mailbox(ALICE, "INBOX")
    return [key.decrypt(region.store.blob(m.blob_id)) for m in region.store.messages(box.id)]


def test_mail_to_a_postgres_region_arrives_and_stays_there(
    running: RunningCloud, pg_url: str
) -> None:
    dublin, us = running.cloud.region("eu-dublin"), running.cloud.region("us-east")
    assert isinstance(dublin.store, PostgresMailStore)
    local, relayed = "PG-LOCAL-MARKER-5e2b", "PG-RELAYED-MARKER-c07d"
    send(running, "eu-dublin", local)
    send(running, "us-east", relayed)
    assert running.drained()
    stored = inbox(dublin)
    assert [local.encode() in m for m in stored] == [True, False]
    assert [relayed.encode() in m for m in stored] == [False, True]
    for marker in (local, relayed):
        # Residency: nothing in the other region's folder; the home region's folder has no
        # mail database (it is in PostgreSQL), and there the mail is ciphertext only.
        assert files_containing(us.root, marker.encode()) == []
        assert files_containing(running.cloud.config.cloud.data_dir, marker.encode()) == []
    assert not (dublin.root / "mail.sqlite").exists()
    with psycopg.connect(pg_url) as db:
        blobs = [bytes(r[0]) for r in db.execute("SELECT data FROM blobs")]
    assert len(blobs) == 2
    assert not any(m.encode() in b for b in blobs for m in (local, relayed))


def test_an_unavailable_database_is_451_never_250(running: RunningCloud, pg_url: str) -> None:
    dublin = running.cloud.region("eu-dublin")
    name = pg_url.rpartition("/")[2]
    admin_url = pg_url.rpartition("/")[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        with pytest.raises(smtplib.SMTPDataError) as error:
            send(running, "eu-dublin", "lost?")
        assert error.value.smtp_code == 451
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    send(running, "eu-dublin", "after the outage")
    [stored] = inbox(dublin)
    assert b"after the outage" in stored


def test_a_hung_database_is_451_and_the_other_region_goes_on(
    running: RunningCloud, pg_server: PostgresServer
) -> None:
    """Issue 15 #5: with eu-dublin's PostgreSQL stopped (SIGSTOP), its MX answers 451 once
    the store's timeout runs out, and us-east (SQLite, same process) keeps accepting mail."""
    dublin, us = running.cloud.region("eu-dublin"), running.cloud.region("us-east")
    with pg_server.frozen():
        with pytest.raises(smtplib.SMTPDataError) as error:
            send(running, "eu-dublin", "while frozen")
        assert error.value.smtp_code == 451
        send(running, "us-east", "the other region", rcpt="bob@example.test")
    assert us.store.mailbox("bob@example.test", "INBOX").messages == 1
    send(running, "eu-dublin", "after the thaw")
    [stored] = inbox(dublin)
    assert b"after the thaw" in stored


def test_a_hung_database_is_imap_unavailable_and_the_other_region_goes_on(
    running: RunningCloud, pg_server: PostgresServer
) -> None:
    """Issue 15 #5: with eu-dublin's PostgreSQL stopped, one IMAP SELECT blocked the event
    loop for 21 s, so us-east (SQLite, same process) answered neither IMAP nor SMTP. Now
    the SELECT waits on a store thread: us-east answers meanwhile, and the SELECT gets
    NO [UNAVAILABLE] once the store's timeout runs out."""
    alice, bob = Raw(running, "eu-dublin"), Raw(running, "us-east")
    for raw, address in ((alice, ALICE), (bob, "bob@example.test")):
        login = b'LOGIN %s "%s"' % (address.encode(), PASSWORD.encode())
        assert raw.command(b"l", login)[-1].startswith(b"l OK")
    assert bob.command(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    with pg_server.frozen():
        alice.send(b"s SELECT INBOX\r\n")
        assert bob.command(b"n", b"NOOP") == [b"n OK NOOP completed\r\n"]
        send(running, "us-east", "while dublin hangs", rcpt="bob@example.test")
        assert b"* 1 EXISTS\r\n" in bob.command(b"m", b"NOOP")
        # The old code answered nobody until the SELECT came back, alice first.
        assert not select.select([alice.sock], [], [], 0)[0], "us-east waited for the SELECT"
        reply = alice.until(b"s")
        assert reply == [reply[-1]] and reply[-1].startswith(b"s NO [UNAVAILABLE]"), reply
    assert alice.command(b"t", b"SELECT INBOX")[-1].startswith(b"t OK")
    for raw in (alice, bob):
        raw.close()
