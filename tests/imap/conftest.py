"""IMAP test helpers: clients on a region's listeners and bulk mail straight into the store."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, settings
from imapclient import IMAPClient

from borderline.cloud import Region
from tests.conftest import PASSWORD, RunningCloud


def make_message(index: int, body: str = "", subject: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Sender {index} <sender{index}@example.org>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = subject if subject is not None else f"message {index}"
    msg["Date"] = "Mon, 02 Feb 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<m{index}@example.org>"
    msg.set_content(body or f"body of message {index}\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def fill(
    region: Region,
    address: str,
    messages: list[bytes],
    mailbox: str = "INBOX",
    summaries: bool = True,
) -> None:
    """Deliver through the planner (encrypted by the vault) in one commit, as ingest does;
    without `summaries`, as a store written before schema version 7 holds them."""
    now = time.time()
    summarize = region.planner.summarize
    if not summaries:
        region.planner.summarize = None
    try:
        deliveries = [
            region.planner.local_delivery(address, content, now, mailbox=mailbox)
            for content in messages
        ]
    finally:
        region.planner.summarize = summarize
    region.store.deliver(deliveries)


def fuzzing(examples: int) -> settings:
    """Hypothesis settings for a fuzz loop against a running cloud: no deadline (the machine
    is shared), and the cloud fixture is meant to be shared by the examples."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(running: RunningCloud, region_id: str = "eu-dublin") -> imaplib.IMAP4:
    listen = running.cloud.region(region_id).section.imap
    assert listen is not None
    return imaplib.IMAP4(listen.host, listen.port, timeout=30)


def login(running: RunningCloud, address: str = "alice@example.test") -> imaplib.IMAP4:
    home = running.cloud.directory.home(address)
    assert home is not None
    client = connect(running, home)
    client.login(address, PASSWORD)
    return client


@pytest.fixture
def alice(running: RunningCloud) -> Iterator[imaplib.IMAP4]:
    client = login(running)
    yield client
    with contextlib.suppress(imaplib.IMAP4.abort, OSError):
        client.logout()


class Raw:
    """A bare socket client for what imaplib refuses to send: bad syntax, pipelining."""

    def __init__(self, running: RunningCloud, region_id: str = "eu-dublin") -> None:
        listen = running.cloud.region(region_id).section.imap
        assert listen is not None
        self.sock = socket.create_connection((listen.host, listen.port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the tagged response for `tag` (literals inline)."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError(f"closed before {tag!r}; got {lines!r}")
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def raw_login(running: RunningCloud) -> Raw:
    """A Raw client logged in as alice at her home region."""
    raw = Raw(running)
    reply = raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    assert reply[-1].startswith(b"l OK"), reply
    return raw


def untagged(lines: list[bytes], word: bytes) -> list[bytes]:
    """The untagged responses `* <n> WORD ...` or `* WORD ...` among `lines`, unterminated."""
    lines = [line.rstrip() for line in lines]
    return [line for line in lines if line[:2] == b"* " and word in line.split(b" ")[1:3]]


@pytest.fixture
def client(running: RunningCloud) -> Iterator[IMAPClient]:
    """An IMAPClient logged in as alice at her home region (eu-dublin)."""
    listen = running.cloud.region("eu-dublin").section.imap
    assert listen is not None
    client = IMAPClient(listen.host, port=listen.port, ssl=False, timeout=30)
    client.login("alice@example.test", PASSWORD)
    yield client
    client.logout()
