"""Message summaries (imap/summary.py): FETCH and SEARCH answer the same from a summary as
from the message, a message stored without one (before schema version 7) gets one from the
first session that reads it, a session makes columns of the summaries it read as records,
and no summary is stored in plaintext."""

from __future__ import annotations

import hashlib
import imaplib
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.cloud import Region
from borderline.imap.mime import Part, section
from borderline.imap.summary import (
    CHEAP_HEADER,
    CHEAP_SIZE,
    COLUMNS,
    COLUMNS_MIN,
    FIELDS_COLUMN,
    IN_BUFFER_FROM,
    MAX_SUMMARY,
    UNUSABLE,
    VERSION,
    VERSION_1,
    cheap_to_summarize,
    fields_column,
    header_fields,
    parse_summary,
    summarize,
    summary_of,
)
from borderline.residency import files_containing
from borderline.store import MAX_RUN_COLUMNS, StoredColumn, StoredSummaries
from borderline.vault import Justification
from tests.conftest import RunningCloud
from tests.imap.conftest import fill, login, make_message
from tests.imap.test_basic import access_events
from tests.imap.test_mime import many_parts

ALICE = "alice@example.test"
ITEMS = (
    "(ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER] RFC822.HEADER"
    " BODY.PEEK[HEADER.FIELDS (From To Subject Message-ID Content-Type)]"
    " BODY.PEEK[HEADER.FIELDS.NOT (Subject)]<0.40> BODY.PEEK[1.MIME])"
)
NESTED = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: undisclosed-recipients:;\r\n"
    b"Cc: Team: a@example.org, (a comment) b@example.org;\r\n"
    b"Subject: =?utf-8?b?w6Rw?= nested\r\nDate: Tue, 03 Feb 2026 11:00:00 +0100\r\n"
    b"Message-ID: <nested@example.org>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed;\r\n boundary="outer"\r\n\r\n'
    b"preamble\r\n--outer\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    b"caf\xe9\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.org\r\nSubject: inner\r\nContent-Type: multipart/alternative;"
    b" boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n"
    b"--outer\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%A4.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--outer--\r\n"
)
HEADER_ONLY = b"From: someone@example.org\r\nSubject: no body at all\r\n"
MESSAGES = [make_message(1), NESTED, HEADER_ONLY, make_message(2, subject="")]
# MESSAGES' summaries as the code of commit 0436df1 wrote them (version 1 records), made by
# tests/imap/fixtures/write_summaries_v1.py.
V1_RECORDS = Path(__file__).parent / "fixtures" / "summaries-v1.bin"
# What a summary answers alone, so FETCH renders it from the view's columns and summaries.
SUMMARY_ITEMS = (
    "(FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER] RFC822.HEADER"
    " BODY.PEEK[HEADER.FIELDS (From To Subject Message-ID Content-Type)]"
    " BODY.PEEK[HEADER.FIELDS (cc DATE x-missing)]<4.30> BODY.PEEK[HEADER.FIELDS(Date)]"
    " BODY.PEEK[HEADER.FIELDS.NOT (Subject)])"
)


def answers(client: imaplib.IMAP4, seq: int) -> bytes:
    """The FETCH response of one message, without its sequence number."""
    typ, data = client.fetch(str(seq), ITEMS)
    assert typ == "OK"
    flat = b"".join(b"".join(p) if isinstance(p, tuple) else p for p in data if p is not None)
    return re.sub(rb"^\d+ \(", b"(", flat)


def each_answer(client: imaplib.IMAP4, first: int, last: int, items: str) -> list[bytes]:
    """The FETCH responses of messages first to last in one command, without their
    sequence numbers."""
    typ, data = client.fetch(f"{first}:{last}", items)
    assert typ == "OK"
    responses: list[bytes] = []
    for piece in data:
        if isinstance(piece, tuple) and re.match(rb"^\d+ \(", piece[0]):
            responses.append(b"")
        if responses and piece is not None:
            responses[-1] += b"".join(piece) if isinstance(piece, tuple) else piece
    assert len(responses) == last - first + 1
    return [re.sub(rb"^\d+ \(", b"(", response) for response in responses]


def version_1_records() -> list[bytes]:
    data, records, at = V1_RECORDS.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        records.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return records


def blob_ids(region: Region) -> list[int]:
    return [m.blob_id for m in region.store.messages(region.store.mailbox(ALICE, "INBOX").id)]


def stored_summaries(region: Region, wanted: list[int] | None = None) -> dict[int, bytes]:
    """The summaries stored one by one for the inbox's messages (those of the blobs
    `wanted`, if given), by blob id."""
    inbox = region.store.mailbox(ALICE, "INBOX").id
    messages = [(m.uid, m.blob_id) for m in region.store.messages(inbox)]
    asked = [m for m in messages if wanted is None or m[1] in wanted]
    return region.store.summaries(inbox, asked).singles


def test_fetch_and_search_answer_the_same_with_and_without_a_summary(
    running: RunningCloud,
) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, MESSAGES, summaries=False)
    fill(region, ALICE, MESSAGES)  # runtime.py wires the summaries in
    count = len(MESSAGES)
    old, new = blob_ids(region)[:count], blob_ids(region)[count:]
    assert sorted(stored_summaries(region)) == new
    before = len(access_events(region))

    client = login(running)
    client.select("INBOX")
    first = [answers(client, seq) for seq in range(1, 2 * count + 1)]
    assert first[:count] == first[count:], "a summary answers as the message does"
    assert b'"=?utf-8?b?w6Rw?= nested"' in first[1] and b"ENVELOPE" in first[1]
    assert sorted(stored_summaries(region, old)) == old, "the first read stored the summaries"
    queries = ('FROM "sender1"', 'FROM "j@example.org"', 'CC "b@example"', 'SUBJECT "nested"')
    for query in (*queries, "HEADER Message-ID nested"):
        _, data = client.search(None, query)
        hits = [int(n) for n in data[0].split()]
        assert hits and [n + count for n in hits if n <= count] == [n for n in hits if n > count]
    _, data = client.search(None, "SENTON 3-Feb-2026")
    assert data == [b"2 %d" % (count + 2)]
    client.logout()
    assert len(access_events(region)) == before + 1, "one logged release, as before"

    again = login(running)
    again.select("INBOX")
    assert [answers(again, seq) for seq in range(1, 2 * count + 1)] == first
    again.logout()


def test_an_appended_message_is_stored_with_its_summary(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    client = login(running)
    typ, _ = client.append("INBOX", "", None, NESTED)
    assert typ == "OK"
    [blob_id] = blob_ids(region)
    assert list(stored_summaries(region)) == [blob_id]
    client.select("INBOX")
    _, data = client.search(None, 'FROM "j@example.org"')
    assert data == [b"1"]
    client.logout()


def test_a_summary_is_at_most_max_summary_else_sessions_read_the_message(
    running: RunningCloud,
) -> None:
    """A sender's header of tens of KiB (a folded Subject here) would make a summary of
    about three times that (the header, the envelope, the search texts): the message gets
    the unusable summary, so the 1,024 a session reads at once stay at most 64 MiB, and
    sessions answer it from the message."""
    subject = " ".join(f"word{i}" for i in range(4000))
    message = make_message(1, subject=subject)
    assert len(message) < MAX_SUMMARY < 3 * len(message)
    assert summary_of(Part(message)) == UNUSABLE
    assert len(summary_of(Part(make_message(2)))) < 2048
    fill(running.cloud.region("eu-dublin"), ALICE, [message])
    client = login(running)
    client.select("INBOX")
    typ, data = client.fetch("1", "(ENVELOPE)")
    client.logout()
    assert typ == "OK"
    answer = b"".join(b"".join(p) if isinstance(p, tuple) else p for p in data if p)
    assert b"word0 word1" in answer and b"word3999" in answer


def test_no_summary_is_stored_in_plaintext(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    marker = b"zebra-summary-marker-5c1e"
    message = make_message(3, subject=marker.decode())
    fill(region, ALICE, [message], summaries=False)  # summarized by the session below
    fill(region, ALICE, [message])  # summarized at delivery
    client = login(running)
    client.select("INBOX")
    client.fetch("1:*", "(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    client.logout()
    stored = stored_summaries(region)
    assert len(stored) == 2
    assert all(marker not in summary for summary in stored.values())
    key = region.vault.release(ALICE, Justification.CUSTOMER_INITIATED_ACCESS, "test")
    assert all(marker in key.decrypt_summary(summary) for summary in stored.values())
    assert files_containing(running.cloud.config.cloud.data_dir, marker) == []


def inbox_columns(region: Region) -> list[StoredColumn]:
    """The encrypted summary columns of the store (the inbox's: there is no other mail)."""
    with region.store.engine.read() as tx:
        rows = tx.all("SELECT field, first_uid, last_uid, data FROM summary_columns")
    return [StoredColumn(str(f), int(a), int(b), bytes(d)) for f, a, b, d in rows]


def test_a_session_makes_columns_of_the_summaries_it_read_and_later_ones_answer_from_them(
    running: RunningCloud,
) -> None:
    """A session that read a run of summaries as records stores their columns (and the
    answers of the HEADER.FIELDS set it was asked); the next answers the same from the
    columns alone, adds the answers of a new set, and an expunge drops the run."""
    region = running.cloud.region("eu-dublin")
    marker = b"zebra-column-marker-91d3"
    count = COLUMNS_MIN + 20
    mail = [NESTED if i % 3 == 0 else make_message(i) for i in range(count - 1)]
    fill(region, ALICE, [*mail, make_message(count, subject=marker.decode())])
    items = "(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (From Subject)])"
    other = (
        "(BODY BODY.PEEK[HEADER.FIELDS (cc To)] BODY.PEEK[HEADER]"
        " BODY.PEEK[HEADER.FIELDS.NOT (From)] BODY.PEEK[HEADER.FIELDS (Date)]<2.9>)"
    )
    assert inbox_columns(region) == []

    first = login(running)
    first.select("INBOX")
    before = each_answer(first, 1, count, items)
    _, hits = first.search(None, 'FROM "j@example.org"')
    assert len(hits[0].split()) == (count - 1 + 2) // 3
    others = each_answer(first, 1, count, other)
    first.logout()
    columns = inbox_columns(region)
    assert {(c.first_uid, c.last_uid) for c in columns} == {(1, count)}, "one run"
    fields = sorted(c.field for c in columns)
    assert [f for f in fields if not f.startswith(FIELDS_COLUMN)] == sorted(COLUMNS)
    assert len(fields) == len(COLUMNS) + 1, "and the answers of (From Subject)"
    assert all(marker not in c.data for c in columns)
    assert files_containing(running.cloud.config.cloud.data_dir, marker) == []

    with region.store.engine.write() as tx:
        tx.run("DELETE FROM summaries")  # so only the columns can answer without parsing
    second = login(running)
    second.select("INBOX")
    assert each_answer(second, 1, count, items) == before
    assert second.search(None, 'FROM "j@example.org"')[1] == hits
    assert each_answer(second, 1, count, other) == others
    assert stored_summaries(region) == {}, "nothing parsed: the columns answered"
    assert len(inbox_columns(region)) == len(COLUMNS) + 3, "and of (cc To) and (Date)"
    second.store("2", "+FLAGS", "\\Deleted")
    second.expunge()
    second.logout()
    assert inbox_columns(region) == []

    third = login(running)
    third.select("INBOX")
    assert each_answer(third, 1, count - 1, items) == [before[0], *before[2:]]
    third.logout()
    assert len(stored_summaries(region)) == count - 1, "parsed, and summarized again"


def test_where_loaded_columns_answer_a_session_reads_no_message(running: RunningCloud) -> None:
    """Columns loaded for one command count for the next: a session that asked for two
    HEADER.FIELDS sets, then ENVELOPE and a third, reads no message (a message left out of a load
    because a column already covered it was once taken for one without a summary)."""
    region = running.cloud.region("eu-dublin")
    count = COLUMNS_MIN + 20
    fill(region, ALICE, [make_message(i) for i in range(count)])
    first = login(running)
    first.select("INBOX")
    items = "(ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"
    expected = each_answer(first, 1, count, items)
    first.logout()
    assert inbox_columns(region), "the first session made the run"
    read: list[int] = []
    blobs = region.store.blobs

    def counted(blob_ids: list[int]) -> dict[int, bytes]:
        read.extend(blob_ids)
        return blobs(blob_ids)

    region.store.blobs = counted  # type: ignore[method-assign]
    try:
        second = login(running)
        second.select("INBOX")
        each_answer(second, 1, count, "(BODY.PEEK[HEADER.FIELDS (From)])")
        each_answer(second, 1, count, "(BODY.PEEK[HEADER.FIELDS (To)])")
        again = each_answer(second, 1, count, items)
        second.logout()
    finally:
        region.store.blobs = blobs  # type: ignore[method-assign]
    assert read == []
    assert again == expected


def test_a_session_that_holds_every_summary_reads_none_again(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch its loaded summaries answer needs no room in the cache: the second FETCH of
    a mailbox the cache holds whole reads no summary from the store (one that made room
    for every batch cleared the cache and read them all again)."""
    monkeypatch.setattr("borderline.imap.commands.fetch.SUMMARY_BATCH", 400)
    monkeypatch.setattr("borderline.imap.fetch.SUMMARY_CACHE", 1000)
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(i) for i in range(800)])
    reads: list[int] = []
    summaries = region.store.summaries

    def counted(*args: Any, **kwargs: Any) -> StoredSummaries:
        reads.append(len(args[1]))
        return summaries(*args, **kwargs)

    monkeypatch.setattr(region.store, "summaries", counted)
    client = login(running)
    client.select("INBOX")
    items = "(BODY.PEEK[HEADER.FIELDS (Subject)])"
    first = each_answer(client, 1, 800, items)
    assert reads == [400, 400]
    assert each_answer(client, 1, 800, items) == first
    each_answer(client, 1, 800, "(BODY.PEEK[TEXT])")  # reading messages makes no room either
    assert each_answer(client, 1, 800, items) == first
    client.logout()
    assert reads == [400, 400]


def test_a_session_reads_and_keeps_summaries_within_a_bound_of_octets(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read brings at most SUMMARY_READ_OCTETS of summaries, so a FETCH or SEARCH of
    many takes several reads and answers as one read does; and a session keeps about
    SUMMARY_CACHE_OCTETS of them, so a mailbox larger than that is read again."""
    region = running.cloud.region("eu-dublin")
    count = COLUMNS_MIN - 1  # so they stay records, not columns, read after read
    fill(region, ALICE, [make_message(i) for i in range(count)])
    items = "(ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"
    client = login(running)
    client.select("INBOX")
    expected = each_answer(client, 1, count, items)
    _, hits = client.search(None, 'FROM "sender1"')
    client.logout()
    sizes = list(map(len, stored_summaries(region).values()))
    bound = 20 * max(sizes)
    monkeypatch.setattr("borderline.imap.commands.common.SUMMARY_READ_OCTETS", bound)
    monkeypatch.setattr("borderline.imap.fetch.SUMMARY_READ_OCTETS", bound)
    monkeypatch.setattr("borderline.imap.fetch.SUMMARY_CACHE_OCTETS", 3 * bound)
    reads: list[tuple[int, int]] = []  # how many messages each read came to, and octets
    summaries = region.store.summaries

    def counted(*args: Any, **kwargs: Any) -> StoredSummaries:
        found = summaries(*args, **kwargs)
        octets = sum(map(len, found.singles.values())) + sum(len(c.data) for c in found.columns)
        reads.append((found.read, octets))
        return found

    monkeypatch.setattr(region.store, "summaries", counted)
    client = login(running)
    client.select("INBOX")
    assert each_answer(client, 1, count, items) == expected
    assert len(reads) >= -(-sum(sizes) // bound) > 1
    assert sum(read for read, _ in reads) == count
    assert max(octets for _, octets in reads) <= bound
    reads.clear()
    assert client.search(None, 'FROM "sender1"')[1] == hits
    assert sum(read for read, _ in reads) == count, "the cache did not keep them all"
    client.logout()


def test_a_session_keeps_the_summaries_it_computes_within_its_bound_of_octets(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages stored without a summary cost nothing to read, so a batch of them can be
    large; the summaries a session computes for them are stored, and kept only while the
    session's summaries stay within SUMMARY_CACHE_OCTETS: the next FETCH reads the others."""
    region = running.cloud.region("eu-dublin")
    count = 40
    items = "(ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"
    fill(region, ALICE, [make_message(i) for i in range(count)], summaries=False)
    client = login(running)
    client.select("INBOX")
    expected = each_answer(client, 1, count, items)
    client.logout()
    sizes = list(map(len, stored_summaries(region).values()))
    assert len(sizes) == count, "the first session stored what it computed"
    with region.store.engine.write() as tx:
        tx.run("DELETE FROM summaries")
    # Room for ten, and reads of one summary each (so reading makes no room by itself).
    monkeypatch.setattr("borderline.imap.fetch.SUMMARY_CACHE_OCTETS", sum(sizes[:10]))
    monkeypatch.setattr("borderline.imap.fetch.SUMMARY_READ_OCTETS", 0)
    monkeypatch.setattr("borderline.imap.commands.common.SUMMARY_READ_OCTETS", 0)
    reads: list[int] = []
    summaries = region.store.summaries

    def counted(*args: Any, **kwargs: Any) -> StoredSummaries:
        found = summaries(*args, **kwargs)
        reads.append(len(found.singles))
        return found

    monkeypatch.setattr(region.store, "summaries", counted)
    client = login(running)
    client.select("INBOX")
    assert each_answer(client, 1, count, items) == expected
    assert reads == [0], "none stored yet: all computed"
    assert each_answer(client, 1, count, items) == expected
    assert sum(reads[1:]) == count - 10, "the ten kept, the others read"
    client.logout()


def test_records_read_from_inside_a_run_never_make_a_second_run_over_it(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the last messages of a run (fewer than RUN_SHARE and RUN_READ_MIN allow)
    takes their records; with the new mail after the run they came to a run of records in
    a row that overlapped the old one, which every session made and the store refused.
    The new mail gets a run of its own, once."""
    region = running.cloud.region("eu-dublin")
    items = "(ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"
    fill(region, ALICE, [make_message(i) for i in range(1000)])
    client = login(running)
    client.select("INBOX")
    each_answer(client, 1, 1000, items)
    client.logout()
    assert {(c.first_uid, c.last_uid) for c in inbox_columns(region)} == {(1, 1000)}
    fill(region, ALICE, [make_message(i) for i in range(1000, 1300)])
    made: list[tuple[int, int, bool]] = []
    add = region.store.add_summary_columns

    def counted(mailbox_id: int, messages: Any, columns: Any) -> bool:
        stored = add(mailbox_id, messages, columns)
        made.append((messages[0][0], messages[-1][0], stored))
        return stored

    monkeypatch.setattr(region.store, "add_summary_columns", counted)
    answers = []
    for _ in range(3):
        client = login(running)
        client.select("INBOX")
        answers.append(each_answer(client, 951, 1300, items))
        client.logout()
    assert made == [(1001, 1300, True)]
    assert {(c.first_uid, c.last_uid) for c in inbox_columns(region)} == {(1, 1000), (1001, 1300)}
    assert answers[0] == answers[1] == answers[2]


def test_a_run_holds_at_most_max_run_columns_whatever_a_client_asks(
    running: RunningCloud,
) -> None:
    """Each HEADER.FIELDS set asked for may get a column of its own, but a run holds at
    most MAX_RUN_COLUMNS, when it is made and after, so no client makes the store grow
    with the sets it asks for; the sets beyond are answered from the header block."""
    region = running.cloud.region("eu-dublin")
    count = COLUMNS_MIN + 4
    fill(region, ALICE, [make_message(i) for i in range(count)])
    for first_set in (0, 30):
        client = login(running)
        client.select("INBOX")
        sets = range(first_set, first_set + 30)
        items = " ".join(f"BODY.PEEK[HEADER.FIELDS (Subject X-{n})]" for n in sets)
        answers = each_answer(client, 1, count, f"({items})")
        client.logout()
        assert all(answer.count(b"Subject: message") == 30 for answer in answers)
        assert len(inbox_columns(region)) == MAX_RUN_COLUMNS


def test_a_header_set_column_is_named_by_its_account_key_alone(running: RunningCloud) -> None:
    """The name of a HEADER.FIELDS set's column is a digest keyed by the account's data
    key: the store cannot tell which set it is, nor that two accounts asked for the same."""
    region = running.cloud.region("eu-dublin")
    running.cloud.add_account("carol@example.test", "eu-dublin", "carol password")
    count = COLUMNS_MIN
    fill(region, ALICE, [make_message(i) for i in range(count)])
    client = login(running)
    client.select("INBOX")
    each_answer(client, 1, count, "(BODY.PEEK[HEADER.FIELDS (From Subject)])")
    client.logout()
    [stored] = [c.field for c in inbox_columns(region) if c.field.startswith(FIELDS_COLUMN)]
    keys = [
        region.vault.release(address, Justification.CUSTOMER_INITIATED_ACCESS, "test")
        for address in (ALICE, "carol@example.test")
    ]
    names = ("Subject", "FROM", "subject")
    assert stored == fields_column(names, keys[0].name)
    assert fields_column(names, keys[1].name) != stored, "another account's differs"
    assert hashlib.sha256(b"from subject").hexdigest()[:32] not in stored


def test_a_buffer_is_summarized_as_its_bytes_and_kept_as_it_was() -> None:
    """SMTP summarizes its DATA buffer with the head put before it for the time of the
    summary (no copy of the message): the same summary as of `head + content` as bytes,
    and the buffer as it was afterwards."""
    head = b"Return-Path: <x@example.org>\r\nReceived: from t ([127.0.0.1])\r\n\tby mx\r\n"
    small = [*MESSAGES, b"\r\nno header", b" continued: first\r\n\r\nbody"]
    padding = b"\r\n\r\n" + b"a line of padding\r\n" * (IN_BUFFER_FROM // 19 + 1)
    big = [m.replace(b"\r\n\r\n", padding, 1) for m in small if b"\r\n\r\n" in m[2:]]
    assert all(len(m) > IN_BUFFER_FROM for m in big) and len(big) >= 3
    for message in small + big:
        buffer = bytearray(message)
        assert summarize(head, buffer) == summarize(head, message)
        assert summarize(head, buffer) == summary_of(Part(head + message))
        assert buffer == message


def test_only_mail_of_one_part_with_a_small_header_is_cheap_to_summarize() -> None:
    """What the group commit summarizes itself (the accepting session computes the rest)."""
    assert cheap_to_summarize(make_message(1))
    signed_off = make_message(3) + b"--\r\nsig\r\n" * 20  # lines of dashes in one part
    assert cheap_to_summarize(signed_off)
    assert not cheap_to_summarize(NESTED) and not cheap_to_summarize(many_parts(2))
    assert not cheap_to_summarize(b"Content-Type: Message/RFC822\r\n\r\n" + signed_off)
    assert not cheap_to_summarize(b"Subject: multipart\r\n" + signed_off)  # never parsed
    crowded = b"To: " + b"a@example.org, " * (CHEAP_HEADER // 15 + 1) + b"\r\n\r\nbody\r\n"
    assert not cheap_to_summarize(crowded)
    assert not cheap_to_summarize(crowded.replace(b"\r\n\r\n", b"\r\n"))  # all header
    assert not cheap_to_summarize(make_message(2) + b"x" * CHEAP_SIZE)


def test_a_version_1_record_reads_as_the_version_2_record_of_its_message() -> None:
    records = version_1_records()
    assert len(records) == len(MESSAGES)
    for message, old in zip(MESSAGES, records, strict=True):
        new = summarize(b"", message)
        assert old[:1] == VERSION_1 and new[:1] == VERSION
        converted, current = parse_summary(old), parse_summary(new)
        assert converted is not None and current is not None
        assert converted.data == current.data


def test_messages_with_version_1_summaries_answer_as_those_with_version_2_and_none(
    running: RunningCloud,
) -> None:
    """Runs of messages that all have summaries are answered from the view's columns and
    the summaries; a run with one message without is answered message by message."""
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, MESSAGES, summaries=False)
    fill(region, ALICE, MESSAGES)
    now = time.time()
    region.store.deliver(
        [
            region.planner.local_delivery(ALICE, message, now, summary=record)
            for message, record in zip(MESSAGES, version_1_records(), strict=True)
        ]
    )
    count = len(MESSAGES)
    client = login(running)
    client.select("INBOX")
    unsummarized = each_answer(client, 1, count, SUMMARY_ITEMS)
    assert b"BODYSTRUCTURE" in unsummarized[1] and b"x-missing" not in unsummarized[0]
    assert each_answer(client, count + 1, 2 * count, SUMMARY_ITEMS) == unsummarized
    assert each_answer(client, 2 * count + 1, 3 * count, SUMMARY_ITEMS) == unsummarized
    assert each_answer(client, 1, count, SUMMARY_ITEMS) == unsummarized, "summarized meanwhile"
    assert [answers(client, seq) for seq in range(2 * count + 1, 3 * count + 1)] == [
        answers(client, seq) for seq in range(1, count + 1)
    ]
    _, data = client.search(None, 'FROM "j@example.org"')
    assert data == [b"2 %d %d" % (count + 2, 2 * count + 2)]
    seen = each_answer(client, count + 1, 2 * count, "(BODY[HEADER.FIELDS (Subject)])")
    assert all(rb"\Seen" in answer and b"Subject" in answer for answer in seen)
    client.logout()


FIELD_NAMES = ["From", "to", "SUBJECT", "x-a", "x-ab", "Cc"]
HEADER_LINE = st.tuples(
    st.sampled_from([*FIELD_NAMES, "X-A", "x-abc", "Received", "from-x"]),
    st.sampled_from([":", " :", "\t:", ""]),
    st.text(alphabet="ab :\t", max_size=6),
    st.sampled_from(["\r\n", "\n", "\r\n ", "\n\t", "\r"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(HEADER_LINE, max_size=8),
    st.sampled_from(["", "\r\n", "\n", "\r\n\r\nbody\r\n", "\n\nbody"]),
    st.lists(st.sampled_from(FIELD_NAMES), max_size=4),
)
def test_header_fields_from_a_summary_are_those_of_the_parsed_header(
    lines: list[tuple[str, str, str, str]], ending: str, names: list[str]
) -> None:
    """Summary.header_fields finds the fields with one pattern over the stored header
    block; it must give what parsing the message gives, whatever its line ends."""
    raw = ("".join("".join(line) for line in lines) + ending).encode()
    summary = parse_summary(summarize(b"", raw))
    assert summary is not None
    expected = section(Part(raw), "HEADER.FIELDS (" + " ".join(names) + ")")
    assert header_fields(summary.header_block, tuple(names)) == expected
