"""SORT and UID SORT (RFC 5256): every criterion, REVERSE, the base subject of section 2.1,
ties in mailbox order, and bad arguments; SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267)."""

from __future__ import annotations

import pytest

from borderline.imap.sort import base_subject
from tests.conftest import RunningCloud
from tests.imap.conftest import fill, raw_login


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Re: hello", "HELLO"),
        ("[list] Re: [other] Fwd: hello (fwd)  (FWD)", "HELLO"),
        ("RE:   Fw: [FWD: re: Hello]", "HELLO"),
        ("[only a tag]", "[ONLY A TAG]"),
        ("  spaced\t out  ", "SPACED OUT"),
        ("Réponse", "RéPONSE"),  # only ASCII letters fold
        ("re: " * 5000 + "x", ""),  # bounded: what is past SUBJECT_LIMIT is not read
    ],
)
def test_base_subject(subject: str, base: str) -> None:
    assert base_subject(subject) == base


def message(subject: str, sender: str, to: str, date: str, size: int) -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nCc: {to}\r\nSubject: {subject}\r\n"
    if date:
        head += f"Date: {date}\r\n"
    return (head + "\r\n" + "x" * size + "\r\n").encode()


def test_sort_orders_by_each_criterion(running: RunningCloud) -> None:
    fill(
        running.cloud.region("eu-dublin"),
        "alice@example.test",
        [
            message(
                "Re: banana", "Zed <zed@a.test>", "b@x.test", "Mon, 02 Feb 2026 12:00:00 +0200", 30
            ),
            message("apple", "amy@b.test", "C@x.test", "Mon, 02 Feb 2026 09:00:00 +0000", 1000),
            message("[list] Fwd: Banana", "bob@c.test", "a@x.test", "", 2000),
            message("cherry", "Amy <AMY@z.test>", "", "not a date", 1000),
        ],
    )
    raw = raw_login(running)
    try:
        raw.command(b"s", b"SELECT INBOX")

        def sort(criteria: bytes, keys: bytes = b"ALL", uid: bool = False) -> bytes:
            command = b"UID SORT " if uid else b"SORT "
            reply = raw.command(b"t", command + b"(" + criteria + b") UTF-8 " + keys)
            assert reply[-1].startswith(b"t OK"), reply
            return reply[0].rstrip(b"\r\n")

        assert sort(b"SUBJECT") == b"* SORT 2 1 3 4", "base subjects; a tie keeps mailbox order"
        assert sort(b"REVERSE SUBJECT") == b"* SORT 4 1 3 2"
        assert sort(b"SUBJECT REVERSE SIZE") == b"* SORT 2 3 1 4"
        assert sort(b"FROM") == b"* SORT 2 4 3 1", "the mailbox part, case-insensitively"
        assert sort(b"TO") == b"* SORT 4 3 1 2", "no To sorts first"
        assert sort(b"CC REVERSE ARRIVAL") == b"* SORT 4 3 1 2"
        assert sort(b"SIZE") == b"* SORT 1 4 2 3"
        assert sort(b"REVERSE SIZE") == b"* SORT 3 2 4 1"
        assert sort(b"REVERSE ARRIVAL") == b"* SORT 1 2 3 4", "one arrival: mailbox order"
        # 1 was sent at 10:00 UTC, 2 at 09:00; 3 and 4 have no usable Date: their arrival.
        assert sort(b"DATE") == b"* SORT 2 1 3 4"
        assert sort(b"SIZE", b"UNSEEN SUBJECT banana") == b"* SORT 1 3"
        assert sort(b"SIZE", b"SUBJECT nothing") == b"* SORT"
        # SORT=DISPLAY (RFC 5957): the display name, else the address.
        assert sort(b"DISPLAYFROM") == b"* SORT 4 2 3 1"
        assert sort(b"REVERSE DISPLAYTO") == b"* SORT 2 1 3 4"
        # ESORT (RFC 5267): MIN and MAX in sort order, ALL as a set that keeps the order.
        assert sort(b"SIZE", b"ALL").startswith(b"* SORT 1 4 2 3")
        reply = raw.command(b"e", b"SORT RETURN (MIN MAX COUNT) (SIZE) UTF-8 ALL")
        assert reply[0] == b'* ESEARCH (TAG "e") MIN 1 MAX 3 COUNT 4\r\n'
        reply = raw.command(b"e", b"SORT RETURN () (SIZE) UTF-8 ALL")
        assert reply[0] == b'* ESEARCH (TAG "e") ALL 1,4,2:3\r\n'
        reply = raw.command(b"e", b"UID SORT RETURN (COUNT) (SIZE) UTF-8 SUBJECT nothing")
        assert reply[0] == b'* ESEARCH (TAG "e") UID COUNT 0\r\n'
        assert raw.command(b"e", b"SORT RETURN (NOPE) (SIZE) UTF-8 ALL")[-1].startswith(b"e BAD")
        uids = raw.command(b"u", b"UID SEARCH ALL")[0].split()[2:]
        assert sort(b"SIZE", uid=True) == b"* SORT " + b" ".join(uids[i] for i in (0, 3, 1, 2))
        for bad in (b"()", b"(REVERSE)", b"(SIZE SIZE)", b"(REVERSE REVERSE SIZE)", b"(NAME)"):
            assert raw.command(b"b", b"SORT " + bad + b" UTF-8 ALL")[-1].startswith(b"b BAD")
        assert raw.command(b"b", b"SORT (SIZE) UTF-8")[-1].startswith(b"b BAD")
        reply = raw.command(b"b", b"SORT (SIZE) KOI8-R ALL")
        assert reply[-1].startswith(b"b NO [BADCHARSET"), reply
        assert b" SORT SORT=DISPLAY ESORT " in raw.command(b"c", b"CAPABILITY")[0]
    finally:
        raw.close()
