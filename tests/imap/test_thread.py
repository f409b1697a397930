"""THREAD and UID THREAD (RFC 5256): REFERENCES links through Message-ID, References and
In-Reply-To and merges by base subject; ORDEREDSUBJECT groups by base subject."""

from __future__ import annotations

from borderline.imap.thread import Item, references, render
from tests.conftest import RunningCloud
from tests.imap.conftest import fill, raw_login


def message(minute: int, subject: str, *headers: str) -> bytes:
    head = [f"Subject: {subject}", f"Date: Mon, 02 Feb 2026 10:{minute:02d}:00 +0000", *headers]
    return ("\r\n".join(head) + "\r\n\r\nbody\r\n").encode()


def test_threads_by_references_and_by_subject(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"),
        "alice@example.test",
        [
            message(1, "hello", "Message-ID: <a@x>"),
            message(2, "Re: hello", "Message-ID: <b@x>", "References: <a@x>"),
            message(3, "Re: hello", "Message-ID: <c@x>", "In-Reply-To: <a@x>"),
            message(0, "other", "Message-ID: <d@x>"),
            # Its parent was never received: the dummy goes, the subject joins it to 4.
            message(4, "Re: other", "Message-ID: <e@x>", "References: <gone@x>"),
            message(5, "lonely"),
            message(6, "dup", "Message-ID: <a@x>"),  # a duplicate Message-ID is its own
            message(7, "something else", "Message-ID: <h@x>", "References: <a@x> <b@x>"),
        ],
    )
    raw = raw_login(running)
    try:
        raw.command(b"s", b"SELECT INBOX")

        def thread(command: bytes) -> bytes:
            reply = raw.command(b"t", command)
            assert reply[-1].startswith(b"t OK"), reply
            return reply[0].rstrip(b"\r\n")

        assert thread(b"THREAD REFERENCES UTF-8 ALL") == b"* THREAD (4 5)(1 (2 8)(3))(6)(7)"
        assert thread(b"THREAD ORDEREDSUBJECT UTF-8 ALL") == (b"* THREAD (4 5)(1 (2)(3))(6)(7)(8)")
        assert thread(b"THREAD REFERENCES US-ASCII SUBJECT hello") == b"* THREAD (1 (2)(3))"
        assert thread(b"THREAD REFERENCES UTF-8 SUBJECT nothing") == b"* THREAD"
        uids = raw.command(b"u", b"UID SEARCH ALL")[0].split()[2:]
        assert thread(b"UID THREAD REFERENCES UTF-8 SUBJECT other") == (
            b"* THREAD (%s %s)" % (uids[3], uids[4])
        )
        for bad in (b"THREAD NOSUCH UTF-8 ALL", b"THREAD REFERENCES UTF-8", b"THREAD (REFERENCES)"):
            assert raw.command(b"b", bad)[-1].startswith(b"b BAD"), bad
        assert raw.command(b"b", b"THREAD REFERENCES KOI8-R ALL")[-1].startswith(
            b"b NO [BADCHARSET"
        )
        capability = raw.command(b"c", b"CAPABILITY")[0]
        assert b" THREAD=ORDEREDSUBJECT THREAD=REFERENCES " in capability
    finally:
        raw.close()


def test_a_deep_chain_is_threaded_without_recursion() -> None:
    """A References chain as deep as the mailbox: every walk is iterative."""
    count = 5000
    items = [
        Item(n, float(n), "", False, f"m{n}", tuple(f"m{i}" for i in range(max(1, n - 3), n)))
        for n in range(1, count + 1)
    ]
    assert render(references(items)) == "(" + " ".join(map(str, range(1, count + 1))) + ")"
    items.append(Item(count + 1, 0.0, "", False, "fork", ("m1",)))
    assert render(references(items)).startswith("(1 (5001)(2 3 4 ")
