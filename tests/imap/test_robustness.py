"""Bad input never crashes a session: BAD/NO with clear text, the connection kept or closed
as RFC 3501 says, oversized literals refused, failed logins throttled."""

from __future__ import annotations

import imaplib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, connect, fill, fuzzing, make_message


def logged_in(running: RunningCloud) -> Raw:
    raw = Raw(running)
    raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    return raw


def test_bad_commands_get_bad_and_the_session_goes_on(running: RunningCloud) -> None:
    raw = Raw(running)
    assert raw.command(b"a", b"FROBNICATE now")[-1] == b"a BAD unknown command 'FROBNICATE'\r\n"
    raw.send(b"\r\n")
    assert raw.file.readline() == b"* BAD Expected: tag SP command\r\n"
    raw.send(b"(tag NOOP\r\n")
    assert raw.file.readline() == b"* BAD Expected: tag SP command\r\n"
    assert raw.command(b"b", b'LOGIN "unterminated')[-1].startswith(b"b BAD unterminated")
    assert raw.command(b"c", b"LOGIN a")[-1] == b"c BAD LOGIN: missing password\r\n"
    assert raw.command(b"d", b"CAPABILITY extra")[-1].startswith(b"d BAD CAPABILITY: unexpected")
    assert raw.command(b"e", b"FETCH 1 FLAGS")[-1].startswith(b"e BAD FETCH needs an authent")
    raw.command(b"f", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    assert raw.command(b"g", b"FETCH 1 FLAGS")[-1].startswith(b"g BAD FETCH needs a selected")
    raw.command(b"h", b"SELECT INBOX")
    for bad in (
        b"FETCH 0 FLAGS",
        b"FETCH 1 (FLAGS",
        b"FETCH 1 BODY[HEADER.FIELDS]",
        b"FETCH x UID",
    ):
        assert raw.command(b"i", bad)[-1].startswith(b"i BAD"), bad
    assert raw.command(b"j", b"SELECT Nowhere")[-1].startswith(b"j NO [NONEXISTENT]")
    assert raw.command(b"k", b"NOOP") == [b"k OK NOOP completed\r\n"]
    raw.close()


def test_oversized_literals_are_refused(running: RunningCloud) -> None:
    limit = running.cloud.config.cloud.max_message_size
    raw = logged_in(running)
    # Synchronizing: refused before the client sends a byte.
    assert raw.command(b"a", b"APPEND INBOX {%d}" % (limit + 1)) == [
        b"a NO [TOOBIG] message of %d octets is over the limit of %d octets\r\n"
        % (limit + 1, limit)
    ]
    # Non-synchronizing: the server reads and discards it, then answers.
    raw.send(b"b APPEND INBOX {%d+}\r\n" % (limit + 1) + b"x" * (limit + 1) + b"\r\n")
    assert raw.until(b"b")[-1].startswith(b"b NO [TOOBIG]")
    assert raw.command(b"c", b"LOGIN {70000}")[-1].startswith(b"c BAD literal of 70000 octets")
    # At the limit is fine.
    body = b"Subject: big\r\n\r\n" + b"y" * (limit - 16)
    raw.send(b"d APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    assert raw.until(b"d")[-1].startswith(b"d OK [APPENDUID")
    raw.close()


def test_overlong_line_is_bye(running: RunningCloud) -> None:
    raw = Raw(running)
    raw.send(b"a NOOP " + b"x" * 70_000 + b"\r\n")
    assert raw.file.readline() == b"* BYE Command line too long\r\n"
    assert raw.file.readline() == b""
    raw.close()


def test_failed_logins_are_throttled_per_address_and_ip(running: RunningCloud) -> None:
    [imap] = [s for s in running.runtime.imap if s.region.id == "eu-dublin"]
    throttle = imap.throttle
    throttle.base_delay, throttle.lockout = 0.05, 5
    client = connect(running)
    for attempt in range(5):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login("alice@example.test", f"wrong {attempt}")
    assert throttle.failed("probe@example.test", "192.0.2.1") == 0.0
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        client.login("alice@example.test", PASSWORD)  # even the right password, for now
    # The lock is on the address and this IP; after a lapse the right password works.
    throttle.window = 0.0
    client.login("alice@example.test", PASSWORD)
    client.logout()


def test_delays_grow_exponentially() -> None:
    from borderline.imap import LoginThrottle

    throttle = LoginThrottle(free=2, base_delay=1.0, max_delay=4.0, lockout=10)
    delays = [throttle.failed("a@example.test", "198.51.100.7") for _ in range(6)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]
    assert throttle.failed("b@example.test", "198.51.100.7") == 4.0, "the IP counts too"
    throttle.succeeded("a@example.test", "198.51.100.7")
    assert not throttle.locked("a@example.test", "203.0.113.9")


TOKENS = st.one_of(
    st.sampled_from(
        [
            "1",
            "1:*",
            "*",
            "0",
            "4294967296",
            "NIL",
            "()",
            "(",
            ")",
            "[",
            "]",
            "\\Seen",
            "BODY[",
            "BODY[1.2.MIME]<0.5>",
            "BODY.PEEK[HEADER.FIELDS (X)]",
            "UID",
            "ALL",
            '""',
            '"a\\"b"',
            '"\\x"',
            "INBOX",
            "~",
            "%",
            "+FLAGS",
            "RETURN",
            "OR",
            "NOT",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="{\r\n"),
        max_size=12,
    ),
)
# Non-synchronizing literals of arbitrary bytes, including invalid UTF-8.
LITERALS = st.binary(max_size=8).map(lambda b: b"{%d+}\r\n" % len(b) + b)
COMMANDS = st.sampled_from(
    [
        "FETCH",
        "UID FETCH",
        "STORE",
        "UID STORE",
        "SEARCH",
        "UID SEARCH",
        "COPY",
        "MOVE",
        "LIST",
        "LSUB",
        "STATUS",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "RENAME",
        "APPEND",
        "ENABLE",
        "ID",
        "NAMESPACE",
        "CHECK",
        "EXPUNGE",
        "UID EXPUNGE",
        "UNSELECT",
        "CLOSE",
        "NOOP",
        "SUBSCRIBE",
        "DELETE",
        "LOGIN",
        "CAPABILITY",
        "X",
        "UID X",
    ]
)


def test_random_command_lines_never_break_the_server(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"), "alice@example.test", [make_message(i) for i in range(3)]
    )
    raw = logged_in(running)

    @fuzzing(300)
    @example(command="FETCH", args=["²".encode()])  # isdigit() is true, int() refuses it
    @example(command="UID SEARCH", args=["²0".encode()])
    @given(
        command=COMMANDS,
        args=st.lists(st.one_of(TOKENS.map(str.encode), LITERALS), max_size=5),
    )
    def check(command: str, args: list[bytes]) -> None:
        line = b" ".join([command.encode(), *args])
        reply = raw.command(b"t", line)
        assert reply[-1][:4] in (b"t OK", b"t NO", b"t BA"), reply
        assert not any(b"SERVERBUG" in r for r in reply), (line, reply)
        assert raw.command(b"z", b"SELECT INBOX")[-1].startswith(b"z OK")

    check()
    raw.close()


def test_commands_pipelined_after_starttls_close_the_connection(running: RunningCloud) -> None:
    raw = Raw(running)
    raw.send(b"a STARTTLS\r\nb LOGIN alice@example.test x\r\n")
    assert raw.file.readline() == b"a OK Begin TLS negotiation now\r\n"
    assert raw.file.readline() == b""
    raw.close()


def test_a_stream_of_garbage_is_cut_off(running: RunningCloud) -> None:
    raw = Raw(running)
    for i in range(20):
        raw.send(b"x%d BLAH\r\n" % i)
    lines = raw.file.read().splitlines()
    assert lines[-1] == b"* BYE Too many invalid commands"
    assert len(lines) == 21
    raw.close()


def test_deep_nesting_is_bad_not_a_crash(running: RunningCloud) -> None:
    raw = Raw(running)
    # Before login: the tokenizer bounds parentheses.
    reply = raw.command(b"a", b"ID " + b"(" * 5000 + b")" * 5000)
    assert reply == [b"a BAD parentheses nested more than 100 deep\r\n"]
    raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    raw.command(b"s", b"SELECT INBOX")
    assert raw.command(b"b", b"SEARCH " + b"NOT " * 3000 + b"ALL")[-1] == (
        b"b BAD SEARCH: keys nested more than 100 deep\r\n"
    )
    assert raw.command(b"c", b"SEARCH " + b"OR SEEN " * 3000 + b"ALL")[-1].startswith(b"c BAD")
    deep = b"SEARCH " + b"NOT (" * 60 + b"ALL" + b")" * 60
    assert raw.command(b"d", deep)[-1].startswith(b"d BAD")
    # What real clients send still works: a chain of 50 ORs.
    assert raw.command(b"e", b"SEARCH " + b"OR SEEN " * 50 + b"ALL")[-1] == (
        b"e OK SEARCH completed\r\n"
    )
    raw.close()


def test_a_command_cannot_grow_without_bound(running: RunningCloud) -> None:
    raw = logged_in(running)
    # Empty literals add no literal octets, but the lines between them count.
    raw.send(b"a SEARCH TEXT {0+}\r\n" + b"OR TEXT {0+}\r\n" * 5000 + b"ALL\r\n")
    assert raw.until(b"a")[-1] == b"a BAD command of over 65536 octets of syntax\r\n"
    # A refused command's chain of non-synchronizing literals is read and dropped.
    raw.send(b"b LOGIN {70000+}\r\n" + b"x" * 70000 + b" {1+}\r\nx" * 3000 + b"\r\n")
    assert raw.until(b"b")[-1].startswith(b"b BAD literal of 70000 octets")
    assert raw.command(b"c", b"NOOP") == [b"c OK NOOP completed\r\n"]
    # A reply goes to a tag only when the tag is valid (it echoed a NUL).
    raw.send(b"\0 LOGIN {70000}\r\n")
    assert raw.file.readline().startswith(b"* BAD literal of 70000 octets")
    raw.close()
