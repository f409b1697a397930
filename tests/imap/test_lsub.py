"""LSUB (RFC 3501 6.3.9): CREATE leaves a mailbox unsubscribed, and a parent of a subscribed
mailbox that "%" stops at is listed \\Noselect."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import raw_login


def test_lsub_lists_unsubscribed_parents_noselect(running: RunningCloud) -> None:
    raw = raw_login(running)
    try:
        for name in (b"box/sub", b"box/deep/er", b"other"):
            assert raw.command(b"c", b"CREATE " + name)[-1] == b"c OK CREATE completed\r\n"
        assert raw.command(b"l", b'LSUB "" box/*') == [b"l OK LSUB completed\r\n"], (
            "CREATE subscribes nothing"
        )
        raw.command(b"s", b"SUBSCRIBE box/sub")
        raw.command(b"s", b"SUBSCRIBE box/deep/er")
        top = raw.command(b"l", b'LSUB "" %')
        assert b'* LSUB (\\Noselect) "/" "box"\r\n' in top, "box/% is subscribed below it"
        assert not [line for line in top if b'"other"' in line], "not subscribed"
        listed = raw.command(b"l", b'LSUB "" box/%')
        assert [line.split(b'"/" ')[-1] for line in listed[:-1]] == [
            b'"box/sub"\r\n',
            b'"box/deep"\r\n',
        ]
        assert listed[1].startswith(b"* LSUB (\\Noselect)")
        assert raw.command(b"l", b'LSUB "" ""') == [
            b'* LSUB (\\Noselect) "/" ""\r\n',
            b"l OK LSUB completed\r\n",
        ]
        raw.command(b"u", b"UNSUBSCRIBE box/deep/er")
        listed = raw.command(b"l", b'LSUB "" box/%')
        assert len(listed) == 2 and listed[0].endswith(b'"box/sub"\r\n')
    finally:
        raw.close()
