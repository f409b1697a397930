"""Fuzzing SMTP over real sockets: hostile sessions against a real `borderline serve` on
its MX and submission ports. Every reply is a well-formed SMTP reply and no input raises
in the server; memory stays bounded; and the server is alive and delivering afterwards."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.cloud import Cloud
from borderline.config import Config, load_config
from tests.conftest import PASSWORD, write_config
from tests.net import wait_for_port
from tests.smtp.served import serve

PER_IP = 20
MAX_SIZE = 1 << 20
# RFC 5321 4.2: a code, then a space or hyphen and printable text (or nothing), CRLF.
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9](?:[ -][^\x00-\x1f\x7f]*)?")
# Peak RSS a test may add to the server (one without a login: a password check alone takes
# argon2's 64 MiB): a few messages of up to 1 MiB in flight.
MEMORY_BOUND = 32 << 20

VERBS = [b"HELO ", b"EHLO ", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY "]
VERBS += [b"AUTH PLAIN ", b"BDAT ", b"HELP", b"EXPN ", b"STARTTLS", b"QUIT"]
ADDRESSES = [b"<alice@example.test>", b"<bob@example.test>", b"<>", b"<x@example.org>"]
ADDRESSES += [b"<\xff\xfe@example.test>", b"<a\x00b@example.test>", b"<" + b"a" * 300 + b">"]
ENDINGS = [b"\r\n", b"\n", b"\r", b"\r\r\n", b"\x00\r\n", b""]
INTO_DATA = b"EHLO f\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
SMUGGLING = [b"x\n.\r\n", b"x\r.\r", b"x\n.\n", b"x\r\n.\n", b"\r\n.\r\nMAIL FROM:<y@x.org>\r\n"]

COMMAND = st.tuples(
    st.sampled_from(VERBS), st.one_of(st.sampled_from(ADDRESSES), st.binary(max_size=64))
).map(b"".join)
CHUNK = st.one_of(
    st.tuples(st.one_of(COMMAND, st.binary(max_size=200)), st.sampled_from(ENDINGS)).map(b"".join),
    st.integers(600, 200_000).map(lambda n: b"A" * n + b"\r\n"),  # over-long lines
    st.integers(1, 2_000).map(lambda n: b"NOOP\r\n" * n),  # a pipelined flood
    st.just(INTO_DATA),
    st.sampled_from(SMUGGLING),
    st.binary(min_size=1, max_size=3000),
)


@dataclass
class Served:
    config: Config
    process: subprocess.Popen[bytes]

    @property
    def mx(self) -> int:
        return self.config.region("eu-dublin").smtp.port

    @property
    def submission(self) -> int:
        listen = self.config.region("eu-dublin").submission
        assert listen is not None
        return listen.port

    @contextmanager
    def bounded_memory(self) -> Iterator[None]:
        """Fails if the server's peak RSS grows by MEMORY_BOUND or more inside the block."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # peak := current
        before = _status(self.process.pid, "VmHWM")
        yield
        grown = _status(self.process.pid, "VmHWM") - before
        assert grown < MEMORY_BOUND, f"peak RSS grew {grown >> 20} MiB"

    def messages(self, region: str, address: str) -> int:
        with Cloud(self.config, only=region) as cloud:
            return cloud.region(region).store.mailbox(address, "INBOX").messages


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("fuzz")
    smtp = (
        f"[smtp]\nmax_connections_per_ip = {PER_IP}\n"
        "command_timeout_seconds = 5\ndata_timeout_seconds = 5\n\n[api]"
    )
    config_path = write_config(
        root, **{"max_message_size = 26214400": f"max_message_size = {MAX_SIZE}", "[api]": smtp}
    )
    config = load_config(config_path)
    with Cloud(config) as cloud:
        cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
        cloud.add_account("bob@example.test", "us-east", PASSWORD)
    process = serve(config_path)
    try:
        for region in config.regions:
            wait_for_port(region.smtp.port)
        with smtplib.SMTP("127.0.0.1", config.region("eu-dublin").smtp.port) as client:
            client.sendmail("x@example.org", ["alice@example.test"], b"Subject: warm\r\n\r\nup\r\n")
        yield Served(config, process)
    finally:
        process.terminate()
        process.wait(30)


def _check_replies(received: bytes) -> None:
    """Every complete line the server sent is a valid reply, and none reports an error
    raised inside the server (aiosmtpd answers those '500 Error: (ExceptionName) ...')."""
    *lines, _partial = received.split(b"\r\n")
    for line in lines:
        assert REPLY_LINE.fullmatch(line), line[:200]
        assert b"Error: (" not in line, line[:200]
        assert len(line) <= 512, "RFC 5321 4.5.3.1.5: a reply line is at most 512 octets"


class _Session:
    """A raw connection whose replies a thread reads to the end, so that floods of
    pipelined commands never deadlock on full socket buffers."""

    def __init__(self, port: int) -> None:
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.received = bytearray()
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.conn.recv(65536):
                self.received += chunk
        except OSError:
            return

    def send(self, data: bytes) -> bool:
        """False once the server has hung up."""
        try:
            self.conn.sendall(data)
        except OSError:
            return False
        return True

    def finish(self) -> bytes:
        """End any DATA, QUIT, and read to the server's close."""
        self.send(b"\r\n.\r\nQUIT\r\n")
        self._reader.join(30)
        assert not self._reader.is_alive(), "the server never closed the session"
        self.conn.close()
        return bytes(self.received)

    def abort(self) -> bytes:
        """Hang up at once with a reset, wherever the session is."""
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):  # the server may have hung up already
            self.conn.shutdown(socket.SHUT_RD)  # wakes the reader; close() then resets
        self.conn.close()
        self._reader.join(30)
        return bytes(self.received)


@settings(max_examples=300, deadline=None)
@given(
    port=st.sampled_from(["mx", "submission"]),
    chunks=st.lists(CHUNK, min_size=1, max_size=8),
    abrupt=st.booleans(),
)
def test_hostile_sessions_get_valid_replies(
    served: Served, port: str, chunks: list[bytes], abrupt: bool
) -> None:
    with served.bounded_memory():
        session = _Session(getattr(served, port))
        for chunk in chunks:
            if not session.send(chunk):
                break
        if abrupt:
            _check_replies(session.abort())  # what came before the reset, if anything
        else:
            received = session.finish()
            assert received.startswith(b"220 ")
            _check_replies(received)


def test_a_pipelined_flood_is_answered_in_full(served: Served) -> None:
    with served.bounded_memory():
        session = _Session(served.mx)
        session.send(b"EHLO flood\r\n" + b"NOOP\r\n" * 20_000)
        received = session.finish()
    _check_replies(received)
    assert received.split(b"\r\n").count(b"250 2.0.0 OK") == 20_000


def test_huge_lines_nul_and_oversized_data_are_refused_and_the_session_goes_on(
    served: Served,
) -> None:
    with served.bounded_memory():
        session = _Session(served.mx)
        session.send(b"EHLO t\r\n" + b"A" * (5 << 20) + b"\r\n" + b"\x00" * (1 << 20) + b"\r\n")
        session.send(INTO_DATA + b"0123456789abcdef\r\n" * (3 * MAX_SIZE // 18) + b".\r\nNOOP\r\n")
        received = session.finish()
    _check_replies(received)
    assert received.count(b"500 5.5.2 Command line too long") == 2
    assert b"552 5.3.4 Error: Too much mail data\r\n250 2.0.0 OK\r\n" in received


def test_abrupt_disconnects_mid_data_store_nothing_and_free_their_places(served: Served) -> None:
    before = served.messages("eu-dublin", "alice@example.test")
    with served.bounded_memory():
        for _ in range(3):
            sessions = [_Session(served.mx) for _ in range(PER_IP - 1)]
            for number, session in enumerate(sessions):
                session.send(INTO_DATA + b"Subject: cut\r\n\r\n" + b"x" * (number * 50_000))
            time.sleep(0.2)
            for session in sessions:
                session.abort()
    # Every aborted connection gave its place back: a full set fits again.
    deadline = time.monotonic() + 10
    while True:
        held = [socket.create_connection(("127.0.0.1", served.mx)) for _ in range(PER_IP)]
        greetings = [conn.recv(4) for conn in held]
        for conn in held:
            conn.close()
        if all(g == b"220 " for g in greetings):
            break
        assert time.monotonic() < deadline, "aborted connections still hold their places"
        time.sleep(0.1)
    assert served.messages("eu-dublin", "alice@example.test") == before


def _login(
    served: Served, before_login: Callable[[smtplib.SMTP], None] | None = None
) -> smtplib.SMTP:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    client = smtplib.SMTP("127.0.0.1", served.submission, timeout=20)
    client.starttls(context=context)
    client.ehlo()
    if before_login is not None:
        before_login(client)
    client.login("alice@example.test", PASSWORD)
    return client


def _hostile_auth(client: smtplib.SMTP) -> None:
    assert client.docmd("AUTH", "PLAIN " + "A" * 100_000)[0] == 500
    assert client.docmd("AUTH", "PLAIN !!!not-base64")[0] == 501
    assert client.docmd("AUTH", "PLAIN AAAA")[0] == 501


def test_submission_over_tls_refuses_what_it_must(served: Served) -> None:
    with _login(served, _hostile_auth) as client:
        for body in (
            b"From: alice@example.test\r\n\r\nbare\nLF\r\n",
            b"From: bob@example.test\r\n\r\nx",
        ):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("alice@example.test", ["bob@example.test"], body)
            assert refused.value.smtp_code == 550


def test_the_server_is_alive_and_delivering_afterwards(served: Served) -> None:
    assert served.process.poll() is None, "the server died"
    alice = served.messages("eu-dublin", "alice@example.test")
    bob = served.messages("us-east", "bob@example.test")
    with smtplib.SMTP("127.0.0.1", served.mx, timeout=20) as client:
        client.sendmail(
            "x@example.org", ["alice@example.test"], b"Subject: ok\r\n\r\nstill here\r\n"
        )
    with _login(served) as client:
        client.sendmail(
            "alice@example.test", ["bob@example.test"], b"From: alice@example.test\r\n\r\nhi\r\n"
        )
    assert served.messages("eu-dublin", "alice@example.test") == alice + 1
    deadline = time.monotonic() + 30
    while served.messages("us-east", "bob@example.test") == bob:
        assert time.monotonic() < deadline, "the relay to bob's home region stalled"
        time.sleep(0.1)
