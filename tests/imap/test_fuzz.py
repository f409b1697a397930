"""Fuzzing over real sockets (issue 15, "And keep it that way"): whatever a client sends and
whatever a sender mailed, every reply is a well-formed IMAP response, none says SERVERBUG,
memory stays bounded, and the server serves normally afterwards."""

from __future__ import annotations

import re
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient import IMAPClient

from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, fuzzing, make_message
from tests.imap.test_mime import messages as hostile_messages
from tests.imap.test_robustness import COMMANDS, TOKENS

LOGIN = b'l LOGIN alice@example.test "%s"\r\n' % PASSWORD.encode()
RESPONSE_START = re.compile(rb"\A(?:\* |\+ |[\x21-\x7e]+ (?:OK|NO|BAD) )")
LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n\Z")


def responses(raw: Raw, tag: bytes) -> Iterator[bytes]:
    """Each whole response (literals and what follows them included) until the tagged one
    for `tag`, or until the server closes the connection; each is checked for form."""
    while True:
        response = line = raw.file.readline()
        if not line:
            return
        while (literal := LITERAL_AT_END.search(line)) is not None:
            response += raw.file.read(int(literal[1]))
            line = raw.file.readline()
            response += line
        assert line.endswith(b"\r\n"), response[-200:]
        assert RESPONSE_START.match(response), response[:200]
        assert b"SERVERBUG" not in response, response[:200]
        yield response
        if response.startswith(tag + b" "):
            return


class Sessions:
    """One logged-in connection, replaced when the fuzz input made the server close it."""

    def __init__(self, running: RunningCloud) -> None:
        self.running = running
        self.raw: Raw | None = None

    def get(self) -> Raw:
        if self.raw is None:
            self.raw = Raw(self.running)
            self.raw.send(LOGIN + b"s SELECT INBOX\r\n")
            assert list(responses(self.raw, b"s"))[-1].startswith(b"s OK")
        return self.raw

    def send(self, data: bytes) -> list[bytes]:
        """Send the input, then a NOOP; the replies up to the NOOP's, or to the close. The
        lines before the NOOP end an IDLE or an AUTHENTICATE the input may have begun."""
        raw = self.get()
        raw.send(data + b"\r\nDONE\r\n*\r\nz NOOP\r\n")
        got = list(responses(raw, b"z"))
        if not got or not got[-1].startswith(b"z "):
            raw.close()
            self.raw = None
        return got


# Client input: commands from the robustness test's tokens, and raw bytes with NUL, bare CR
# and bare LF. No "{" outside the literals made here: a literal announced by chance would
# make the server wait, rightly, for octets that never come.
GARBAGE = st.binary(max_size=200).map(lambda b: b.replace(b"{", b"("))
LITERALS = st.one_of(
    st.binary(max_size=20).map(lambda b: b"{%d}\r\n" % len(b) + b),
    st.binary(max_size=20).map(lambda b: b"{%d+}\r\n" % len(b) + b),
    st.sampled_from([b"{2000000}\r\n", b"{4294967296}\r\n", b"{999999999999}\r\n"]),
)
WORDS = st.one_of(TOKENS.map(str.encode), LITERALS, GARBAGE)
LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\0\r\n"])
LINES = st.one_of(
    st.builds(
        lambda tag, command, words, end: (
            tag + b" " + command.encode() + b" " + b" ".join(words) + end
        ),
        st.sampled_from([b"t", b"a1", b"*", b"", b"\0"]),
        COMMANDS,
        st.lists(WORDS, max_size=5),
        LINE_ENDS,
    ),
    GARBAGE,
    st.integers(1, 40).map(lambda n: b"t SEARCH " + b"(" * n * 5 + b"ALL" + b")" * n * 5),
    st.integers(1, 40).map(lambda n: b"t SEARCH " + b"NOT " * n * 5 + b"ALL"),
)
# Large inputs, sent once each rather than drawn: each costs a megabyte or a long answer.
LARGE = [
    b"t NOOP " + b"x" * 65_000,  # a long line, within the limit
    b"t FETCH 1 (" + b"BODY.PEEK[HEADER] " * 3000 + b")",
    b"t APPEND INBOX {1048577}",  # over the test cloud's message limit
    b"t APPEND INBOX {1048577+}\r\n" + b"x" * 1_048_577,
    b"t LOGIN {70000+}\r\n" + b"x" * 70_000,
    b"t SEARCH " + b"TEXT {0+}\r\n" * 2000 + b"ALL",
    b"t SEARCH " + b"(" * 5000,
    b"\0" * 60_000,
    b"\r" * 60_000 + b"\n",
]


def test_fuzzed_input_gets_well_formed_replies_and_the_server_lives_on(
    running: RunningCloud,
) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(3)]
    )
    sessions = Sessions(running)

    @fuzzing(120)
    @given(st.lists(LINES, min_size=1, max_size=6))
    def check(lines: list[bytes]) -> None:
        sessions.send(b"\r\n".join(lines))

    check()
    for data in LARGE:
        assert sessions.send(data)[-1] == b"z OK NOOP completed\r\n", data[:40]
    # An overlong line is BYE, the connection closed; the server goes on.
    assert sessions.send(b"t NOOP " + b"x" * 70_000)[-1] == b"* BYE Command line too long\r\n"
    assert sessions.send(b"t FETCH 1:* (FLAGS)")[-1] == b"z OK NOOP completed\r\n"
    served_normally(running)


def served_normally(running: RunningCloud) -> None:
    listen = running.cloud.region("eu-dublin").section.imap
    assert listen is not None
    with IMAPClient(listen.host, port=listen.port, ssl=False, timeout=30) as client:
        client.login("alice@example.test", PASSWORD)
        client.select_folder("INBOX")
        uids = client.search(["ALL"])
        assert uids and client.fetch(uids[:1], ["ENVELOPE"])


def test_a_pipelined_flood_is_answered_in_order_in_bounded_memory(running: RunningCloud) -> None:
    big = [make_message(i, body="y" * 100_000 + "\n") for i in range(3)]
    fill(running.cloud.region("eu-dublin"), "alice@example.test", big)
    raw = Raw(running)
    raw.send(LOGIN + b"s SELECT INBOX\r\n")
    list(responses(raw, b"s"))
    # 40 MB of answers to 400 commands sent at once, while the client reads nothing.
    kinds = [b"UID FETCH 1:* (BODY.PEEK[])", b"NOOP", b"SEARCH UNSEEN", b"FETCH 2 (FLAGS)"]
    flood = b"".join(b"c%d %s\r\n" % (i, kinds[i % len(kinds)]) for i in range(400))
    tracemalloc.start()
    try:
        sender = threading.Thread(target=raw.send, args=(flood,))
        sender.start()
        time.sleep(1)  # the server must stop reading and writing, not buffer the answers
        backed_up = tracemalloc.get_traced_memory()[0]
        tags = [r.split(b" ", 1)[0] for r in responses(raw, b"c399") if not r.startswith(b"*")]
        sender.join()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tags == [b"c%d" % i for i in range(400)]
    assert backed_up < 8 * 1024 * 1024 and peak < 16 * 1024 * 1024, (backed_up, peak)
    raw.close()
    served_normally(running)


@pytest.fixture
def mailbox_of_hostile_mail(running: RunningCloud) -> Iterator[IMAPClient]:
    listen = running.cloud.region("eu-dublin").section.imap
    assert listen is not None
    with IMAPClient(listen.host, port=listen.port, ssl=False, timeout=30) as client:
        client.login("alice@example.test", PASSWORD)
        yield client


def test_hostile_mail_gets_answers_a_strict_client_parses(
    running: RunningCloud, mailbox_of_hostile_mail: IMAPClient
) -> None:
    client = mailbox_of_hostile_mail
    dublin = running.cloud.region("eu-dublin")

    @fuzzing(40)
    @given(st.lists(hostile_messages(), min_size=1, max_size=5))
    def check(mail: list[bytes]) -> None:
        client.select_folder("INBOX")
        if old := client.search(["ALL"]):
            client.delete_messages(old)
            client.expunge()
        fill(dublin, "alice@example.test", mail)
        client.noop()
        fetched = client.fetch(
            client.search(["ALL"]),
            ["BODYSTRUCTURE", "ENVELOPE", "BODY.PEEK[1.MIME]", "BODY.PEEK[HEADER.FIELDS (TO)]"],
        )
        assert len(fetched) == len(mail)
        client.search(["TEXT", "needle"])
        client.search(["HEADER", "Content-Type", "multipart"])

    check()
    served_normally(running)
