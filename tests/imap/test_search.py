"""SEARCH on headers: every field of a repeated header counts, and the address keys match
an address however it was written (comments, groups), as Dovecot does."""

from __future__ import annotations

import pytest

from tests.conftest import RunningCloud
from tests.imap.conftest import fill, raw_login

MESSAGES = [
    b"From: plain@example.org\r\nX-Extra: first one\r\nX-Extra: another one\r\n\r\nx\r\n",
    b"From: <user-from (comment)@ (comment) example.org>\r\n\r\nx\r\n",
    b"From: Real Name <user-from@example.org>\r\nTo: team: one@example.org;\r\n\r\nx\r\n",
]


@pytest.mark.one_engine("header matching; the store engine plays no part")
def test_header_keys_see_repeated_fields_and_addresses_with_comments(
    running: RunningCloud,
) -> None:
    fill(running.cloud.region("eu-dublin"), "alice@example.test", MESSAGES)
    raw = raw_login(running)
    try:
        raw.command(b"s", b"EXAMINE INBOX")

        def search(keys: bytes) -> bytes:
            lines = raw.command(b"q", b"SEARCH " + keys)
            assert lines[-1] == b"q OK SEARCH completed\r\n", lines
            return lines[0].rstrip()

        assert search(b'HEADER X-Extra "another"') == b"* SEARCH 1"
        assert search(b'HEADER X-Extra "first"') == b"* SEARCH 1"
        assert search(b"FROM user-from@example.org") == b"* SEARCH 2 3"
        assert search(b'FROM "real name <user-from@"') == b"* SEARCH 3"
        assert search(b"FROM comment") == b"* SEARCH 2", "the field's text still counts"
        assert search(b"TO one@example.org") == b"* SEARCH 3", "an address inside a group"
    finally:
        raw.close()


@pytest.mark.one_engine("SEARCH result forms; the store engine plays no part")
def test_esearch_return_options_and_condstore(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), "alice@example.test", MESSAGES)
    raw = raw_login(running)
    try:
        raw.command(b"s", b"SELECT INBOX")

        def esearch(keys: bytes) -> list[bytes]:
            lines = raw.command(b"e", keys)
            assert lines[-1].startswith(b"e OK "), lines
            return [line.rstrip() for line in lines[:-1]]

        assert esearch(b"SEARCH RETURN () ALL") == [b'* ESEARCH (TAG "e") ALL 1:3']
        assert esearch(b"SEARCH RETURN (MIN MAX COUNT) 2:3") == [
            b'* ESEARCH (TAG "e") MIN 2 MAX 3 COUNT 2'
        ]
        assert esearch(b"UID SEARCH RETURN (COUNT ALL) 1000") == [
            b'* ESEARCH (TAG "e") UID COUNT 0'
        ]
        # The first CONDSTORE command reports HIGHESTMODSEQ; MIN's MODSEQ is its message's.
        stored = esearch(b"STORE 3 +FLAGS (\\Seen)")
        enabling = raw.command(b"f", b"FETCH 1,3 (MODSEQ)")
        assert enabling[0].startswith(b"* OK [HIGHESTMODSEQ "), "CONDSTORE enabled here"
        first, third = enabling[-3:-1]
        assert stored[0].startswith(b"* 3 FETCH (FLAGS (")
        reply = esearch(b"SEARCH RETURN (MIN) MODSEQ 1")
        assert reply == [
            b'* ESEARCH (TAG "e") MIN 1 MODSEQ ' + first.rstrip().split(b"(")[-1].rstrip(b")")
        ]
        assert third.startswith(b"* 3 FETCH (MODSEQ (")
        assert not raw.command(b"f", b"FETCH 1 (MODSEQ)")[0].startswith(b"* OK"), "only once"
        assert raw.command(b"b", b"SEARCH RETURN (FIRST) ALL")[-1].startswith(b"b BAD")
    finally:
        raw.close()
