"""LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and the SPECIAL-USE return option
(RFC 6154): selection and return options over a real connection."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import Raw, raw_login


def listed(raw: Raw, command: bytes) -> list[bytes]:
    reply = raw.command(b"l", command)
    assert reply[-1] == b"l OK LIST completed\r\n", reply
    return [line.rstrip(b"\r\n") for line in reply[:-1]]


def test_selection_and_return_options(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        for name in (b"x/a", b"x/b/c", b"x/d/e", b"x/gone"):
            assert raw.command(b"c", b"CREATE " + name)[-1].startswith(b"c OK")
        for name in (b"x/a", b"x/b/c", b"x/d/e", b"x/d", b"x/gone"):
            assert raw.command(b"s", b"SUBSCRIBE " + name)[-1].startswith(b"s OK")
        assert raw.command(b"d", b"DELETE x/gone")[-1].startswith(b"d OK")

        assert listed(raw, b'LIST (SUBSCRIBED) "" x/*') == [
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/a"',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/b/c"',
            b'* LIST (\\HasChildren \\Subscribed) "/" "x/d"',
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/d/e"',
            b'* LIST (\\NonExistent \\Subscribed) "/" "x/gone"',
        ], "the deleted mailbox's subscription stays"
        assert listed(raw, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" x/% RETURN (CHILDREN)') == [
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/a"',
            b'* LIST (\\HasChildren) "/" "x/b" ("CHILDINFO" ("SUBSCRIBED"))',
            b'* LIST (\\HasChildren \\Subscribed) "/" "x/d" ("CHILDINFO" ("SUBSCRIBED"))',
            b'* LIST (\\NonExistent \\Subscribed) "/" "x/gone"',
        ]
        # A parent whose subscribed child matches a pattern itself gets no CHILDINFO.
        assert listed(raw, b'LIST (SUBSCRIBED RECURSIVEMATCH) "" (x/b x/b/c)') == [
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/b/c"'
        ]
        assert listed(raw, b'LIST "" (x/a x/d) RETURN (SUBSCRIBED)') == [
            b'* LIST (\\HasNoChildren \\Subscribed) "/" "x/a"',
            b'* LIST (\\HasChildren \\Subscribed) "/" "x/d"',
        ]
        assert listed(raw, b'LIST (REMOTE) "" x/b') == [b'* LIST (\\HasChildren) "/" "x/b"']
        assert raw.command(b"u", b"UNSUBSCRIBE x/gone")[-1].startswith(b"u OK")
        assert listed(raw, b'LIST (SUBSCRIBED) "" x/gone') == []
        assert listed(raw, b'LIST (SPECIAL-USE) "" *') == [
            b'* LIST (\\HasNoChildren \\%s) "/" "%s"' % (name, name)
            for name in (b"Drafts", b"Junk", b"Sent", b"Trash")
        ]
        assert listed(raw, b'LIST "" Sent RETURN (SPECIAL-USE)') == [
            b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"'
        ]
        for bad in (
            b'LIST (IMAPTEST) "" ""',
            b'LIST (RECURSIVEMATCH) "" ""',
            b'LIST (RECURSIVEMATCH REMOTE) "" ""',
            b'LIST "" "" RETURN (IMAPTEST)',
            b'LIST "" "" RETURN (STATUS)',
            b'LIST "" "" RETURN (STATUS (NOSUCH))',
            b'LIST "" "" RETURN ((MESSAGES))',
            b'LIST "" () RETURN ()',
            b'LIST "" (' + b" ".join([b"a"] * 101) + b")",
        ):
            reply = raw.command(b"b", bad)
            assert reply[-1].startswith(b"b BAD "), (bad, reply)
    finally:
        raw.close()


def test_return_status(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        raw.command(b"c", b"CREATE st/box")
        raw.send(b"a APPEND st/box {5+}\r\nhello\r\n")
        assert raw.until(b"a")[-1].startswith(b"a OK")
        assert listed(raw, b'LIST "" st/% RETURN (STATUS (MESSAGES UNSEEN SIZE))') == [
            b'* LIST (\\HasNoChildren) "/" "st/box"',
            b'* STATUS "st/box" (MESSAGES 1 UNSEEN 1 SIZE 5)',
        ]
        # A mailbox that does not exist gets no STATUS.
        raw.command(b"s", b"SUBSCRIBE st/box")
        raw.command(b"d", b"DELETE st/box")
        assert listed(raw, b'LIST (SUBSCRIBED) "" st/% RETURN (STATUS (MESSAGES))') == [
            b'* LIST (\\NonExistent \\Subscribed) "/" "st/box"'
        ]
        reply = raw.command(b"c", b"CAPABILITY")
        assert b" LIST-EXTENDED LIST-STATUS " in reply[0]
    finally:
        raw.close()
