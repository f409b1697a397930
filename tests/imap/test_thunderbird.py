"""Command sequences Thunderbird 153 ESR sends (recorded with MOZ_LOG=IMAP:5 against a live
region under Xvfb, docs/imap.md), replayed over a raw connection."""

from __future__ import annotations

from tests.conftest import RunningCloud
from tests.imap.conftest import Raw, raw_login


def ok(raw: Raw, command: bytes) -> list[bytes]:
    reply = raw.command(b"t", command)
    assert reply[-1].startswith(b"t OK "), (command, reply)
    return [line.rstrip(b"\r\n") for line in reply[:-1]]


def test_renaming_a_folder_and_moving_it_to_trash(running: RunningCloud) -> None:
    """Thunderbird follows every RENAME with SUBSCRIBE of the new name and UNSUBSCRIBE of
    the old one; the RENAME already moved the subscription, so the old name is no longer
    subscribed and UNSUBSCRIBE has nothing to do, which is not a failure."""
    raw = raw_login(running)
    try:
        ok(raw, b"ENABLE UTF8=ACCEPT")
        ok(raw, b'create "Projects"')
        ok(raw, b'subscribe "Projects"')
        for old, new in (("Projects", "Projekte ü"), ("Projekte ü", "Trash/Projekte ü")):
            ok(raw, f'rename "{old}" "{new}"'.encode())
            ok(raw, f'subscribe "{new}"'.encode())
            ok(raw, f'unsubscribe "{old}"'.encode())
        assert ok(raw, b'list (subscribed) "" "*" return (special-use)')[4:] == [
            b'* LIST (\\HasChildren \\Trash \\Subscribed) "/" "Trash"',
            '* LIST (\\HasNoChildren \\Subscribed) "/" "Trash/Projekte ü"'.encode(),
        ]
        ok(raw, b"unsubscribe never-subscribed")
        reply = raw.command(b"s", b"subscribe never-subscribed")
        assert reply[-1].startswith(b"s NO [NONEXISTENT]"), reply
    finally:
        raw.close()
