"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: what a session that sends ENABLE IMAP4rev2 gets
(no \\Recent, ESEARCH, a LIST response on SELECT, UTF-8 names), while a session that does
not keeps IMAP4rev1's; and SEARCHRES (RFC 5182) and STATUS=SIZE (RFC 8438) for both."""

from __future__ import annotations

import contextlib
import imaplib
from collections.abc import Iterator

import pytest

from tests.conftest import RunningCloud
from tests.imap.conftest import fill, login, make_message

ALICE = "alice@example.test"
Untagged = dict[str, list[bytes]]


def run(client: imaplib.IMAP4, name: str, *args: str | bytes) -> Untagged:
    """One command through imaplib, which must answer OK: its untagged responses by name
    (the text after the name; response codes of untagged OKs under the code's name)."""
    client.untagged_responses.clear()
    status, data = client._simple_command(name, *args)
    assert status == "OK", (name, args, data)
    return responses(client)


def select(client: imaplib.IMAP4, mailbox: str | bytes, readonly: bool = False) -> Untagged:
    """SELECT (EXAMINE with `readonly`) through imaplib, which then knows the state; a
    UTF-8 name goes as bytes."""
    status, data = client.select(mailbox, readonly)  # type: ignore[arg-type]
    assert status == "OK", (mailbox, data)
    return responses(client)


def responses(client: imaplib.IMAP4) -> Untagged:
    return {key: list(values) for key, values in client.untagged_responses.items()}


def refused(client: imaplib.IMAP4, name: str, *args: str | bytes) -> str:
    """The tagged status of a command that must not answer OK (imaplib raises on BAD)."""
    try:
        status, data = client._simple_command(name, *args)
    except imaplib.IMAP4.error as exc:
        assert " BAD " in f" {exc} ", exc
        return "BAD"
    assert status != "OK", (name, args, data)
    return status


def fetched(client: imaplib.IMAP4, numbers: str, items: str, uid: bool = False) -> list[bytes]:
    """The FETCH responses (their text) of FETCH or UID FETCH."""
    command = ("UID", "FETCH") if uid else ("FETCH",)
    answer = run(client, *command, numbers, items)
    return [value for value in answer.get("FETCH", []) if isinstance(value, bytes)]


def tag(client: imaplib.IMAP4) -> bytes:
    """The tag of the command `client` sent last (ESEARCH names it)."""
    return client.tagpre + str(client.tagnum - 1).encode()


@contextlib.contextmanager
def sessions(running: RunningCloud, rev2: int = 1, rev1: int = 0) -> Iterator[list[imaplib.IMAP4]]:
    """Logged-in clients: first `rev2` that enabled IMAP4rev2, then `rev1` that did not."""
    clients = [login(running) for _ in range(rev2 + rev1)]
    try:
        for client in clients[:rev2]:
            status, _ = client.enable("IMAP4rev2")
            assert status == "OK"
            assert client.untagged_responses.pop("ENABLED") == [b"IMAP4rev2"]
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(imaplib.IMAP4.abort, OSError):
                client.logout()


def test_both_revisions_are_advertised_and_enable_answers_enabled(
    running: RunningCloud,
) -> None:
    client = login(running)
    try:
        before = run(client, "CAPABILITY")["CAPABILITY"][0].split()
        assert {b"IMAP4rev1", b"IMAP4rev2", b"SEARCHRES", b"STATUS=SIZE"} <= set(before)
        client.untagged_responses.clear()
        assert client.enable("IMAP4rev2")[0] == "OK"
        assert client.untagged_responses["ENABLED"] == [b"IMAP4rev2"]
        # ENABLE changes no capability (RFC 9051 6.3.1).
        assert run(client, "CAPABILITY")["CAPABILITY"][0].split() == before
    finally:
        client.logout()


def test_a_rev2_session_has_no_recent_and_leaves_it_to_rev1_sessions(
    running: RunningCloud,
) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(1), make_message(2)])
    with sessions(running, rev2=1, rev1=2) as (rev2, rev1, other):
        selected = select(rev2, "INBOX")
        assert selected["EXISTS"] == [b"2"]
        assert "RECENT" not in selected
        assert "UNSEEN" not in selected, "UNSEEN is not an IMAP4rev2 response code"
        assert selected["LIST"] == [b'() "/" "INBOX"']
        assert fetched(rev2, "1:*", "(FLAGS)") == [b"1 (FLAGS ())", b"2 (FLAGS ())"]
        assert run(rev2, "SEARCH", "RECENT")["ESEARCH"] == [b'(TAG "' + tag(rev2) + b'")']
        assert run(rev2, "SEARCH", "NEW")["ESEARCH"] == [b'(TAG "' + tag(rev2) + b'")']
        assert run(rev2, "SEARCH", "OLD")["ESEARCH"] == [b'(TAG "' + tag(rev2) + b'") ALL 1:2']
        assert refused(rev2, "STATUS", "INBOX", "(MESSAGES RECENT)") == "BAD"
        assert run(rev2, "STATUS", "INBOX", "(MESSAGES)")["STATUS"] == [b'"INBOX" (MESSAGES 2)']

        # New mail: EXISTS without RECENT, and the mail stays recent for IMAP4rev1.
        fill(region, ALICE, [make_message(3)])
        heard = run(rev2, "NOOP")
        assert heard["EXISTS"] == [b"3"]
        assert "RECENT" not in heard
        assert fetched(rev2, "3", "(FLAGS)") == [b"3 (FLAGS ())"]

        # An IMAP4rev1 session keeps today's SELECT: RECENT (the rev2 session claimed
        # none of them) and the UNSEEN code, no LIST.
        status = run(other, "STATUS", "INBOX", "(RECENT)")["STATUS"]
        assert status == [b'"INBOX" (RECENT 3)']
        old = select(rev1, "INBOX")
        assert old["RECENT"] == [b"3"]
        assert old["UNSEEN"] == [b"1"]
        assert "LIST" not in old
        assert fetched(rev1, "1", "(FLAGS)") == [b"1 (FLAGS (\\Recent))"]
        assert run(rev1, "SEARCH", "RECENT")["SEARCH"] == [b"1 2 3"]
        fill(region, ALICE, [make_message(4)])
        assert run(rev1, "NOOP")["RECENT"] == [b"4"]


def test_rev2_search_answers_esearch(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), ALICE, [make_message(i) for i in range(1, 5)])
    with sessions(running, rev2=1, rev1=1) as (rev2, rev1):
        select(rev2, "INBOX")
        run(rev2, "STORE", "2:3", "+FLAGS.SILENT", r"(\Flagged)")
        uids = [int(line.split()[2][:-1]) for line in fetched(rev2, "1:*", "(UID)")]

        def esearch(*args: str) -> list[bytes]:
            responses = run(rev2, *args)
            assert "SEARCH" not in responses, "IMAP4rev2 has no SEARCH response"
            return responses["ESEARCH"]

        assert esearch("SEARCH", "FLAGGED") == [b'(TAG "' + tag(rev2) + b'") ALL 2:3']
        expected = f"ALL {uids[1]}:{uids[2]}".encode()
        assert esearch("UID", "SEARCH", "FLAGGED") == [
            b'(TAG "' + tag(rev2) + b'") UID ' + expected
        ]
        assert esearch("SEARCH", "DELETED") == [b'(TAG "' + tag(rev2) + b'")'], "none found"
        assert esearch("UID", "SEARCH", "DELETED") == [b'(TAG "' + tag(rev2) + b'") UID']
        assert esearch("SEARCH", "RETURN", "(COUNT MIN)", "ALL") == [
            b'(TAG "' + tag(rev2) + b'") MIN 1 COUNT 4'
        ]
        select(rev1, "INBOX", readonly=True)
        assert run(rev1, "SEARCH", "FLAGGED")["SEARCH"] == [b"2 3"]


def test_rev2_names_are_utf8_and_list_marks_children(running: RunningCloud) -> None:
    with sessions(running, rev2=1, rev1=1) as (rev2, rev1):
        run(rev2, "CREATE", '"Café/Menü"'.encode())
        listed = run(rev2, "LIST", '""', '"Caf*"')["LIST"]
        assert listed == [
            '(\\HasChildren) "/" "Café"'.encode(),
            '(\\HasNoChildren) "/" "Café/Menü"'.encode(),
        ]
        selected = select(rev2, '"Café/Menü"'.encode(), readonly=True)
        assert selected["LIST"] == ['() "/" "Café/Menü"'.encode()]
        status = run(rev2, "STATUS", '"Café"'.encode(), "(MESSAGES)")["STATUS"]
        assert status == ['"Café" (MESSAGES 0)'.encode()]
        # IMAP4rev1 keeps modified UTF-7 (RFC 9051 appendix A.1).
        assert run(rev1, "LIST", '""', '"Caf*"')["LIST"] == [
            b'(\\HasChildren) "/" "Caf&AOk-"',
            b'(\\HasNoChildren) "/" "Caf&AOk-/Men&APw-"',
        ]
        assert select(rev1, '"Caf&AOk-/Men&APw-"', readonly=True).get("LIST") is None


@pytest.mark.parametrize("rev2", [0, 1], ids=["imap4rev1", "imap4rev2"])
def test_search_saves_its_result_for_dollar(running: RunningCloud, rev2: int) -> None:
    fill(running.cloud.region("eu-dublin"), ALICE, [make_message(i) for i in range(1, 7)])
    with sessions(running, rev2=rev2, rev1=1 - rev2) as (client,):
        select(client, "INBOX")
        uids = [int(line.split()[2][:-1]) for line in fetched(client, "1:*", "(UID)")]
        run(client, "STORE", "2,4:5", "+FLAGS.SILENT", r"(\Flagged)")

        # SAVE alone answers no ESEARCH (RFC 5182 2.4); `$` then names what it found.
        saved = run(client, "SEARCH", "RETURN", "(SAVE)", "FLAGGED")
        assert "ESEARCH" not in saved and "SEARCH" not in saved
        assert [line.split()[0] for line in fetched(client, "$", "(FLAGS)")] == [b"2", b"4", b"5"]
        by_uid = fetched(client, "$", "(FLAGS)", uid=True)
        assert [int(line.split()[2]) for line in by_uid] == [uids[1], uids[3], uids[4]]
        found = run(client, "SEARCH", "RETURN", "(ALL)", "$", "NOT", "5")["ESEARCH"]
        assert found == [b'(TAG "' + tag(client) + b'") ALL 2,4']
        found = run(client, "UID", "SEARCH", "RETURN", "(COUNT)", "UID", "$")["ESEARCH"]
        assert found == [b'(TAG "' + tag(client) + b'") UID COUNT 3']

        # A UID SEARCH saves UIDs: `$` is sequence numbers to FETCH, UIDs to UID FETCH.
        run(client, "UID", "SEARCH", "RETURN", "(SAVE MIN MAX)", "FLAGGED")
        assert [line.split()[0] for line in fetched(client, "$", "(UID)")] == [b"2", b"5"]

        # STORE, COPY and UID EXPUNGE take `$`; an expunge removes a message from `$` and
        # what is left is renumbered.
        run(client, "SEARCH", "RETURN", "(SAVE)", "FLAGGED")
        run(client, "STORE", "$", "+FLAGS.SILENT", r"(\Seen)")
        assert run(client, "SEARCH", "RETURN", "(ALL)", "SEEN")["ESEARCH"][0].endswith(
            b" ALL 2,4:5"
        )
        run(client, "COPY", "$", "Junk")
        assert run(client, "STATUS", "Junk", "(MESSAGES)")["STATUS"] == [b'"Junk" (MESSAGES 3)']
        run(client, "STORE", "2", "+FLAGS.SILENT", r"(\Deleted)")
        expunged = run(client, "UID", "EXPUNGE", str(uids[1]))
        assert expunged["EXPUNGE"] == [b"2"]
        assert [line.split()[0] for line in fetched(client, "$", "(UID)")] == [b"3", b"4"]
        run(client, "STORE", "$", "+FLAGS.SILENT", r"(\Deleted)")
        assert run(client, "UID", "EXPUNGE", "$")["EXPUNGE"] == [b"4", b"3"]
        assert fetched(client, "$", "(UID)") == []

        # SORT RETURN (SAVE) saves too.
        run(client, "SORT", "RETURN", "(SAVE)", "(REVERSE ARRIVAL)", "UTF-8", "ALL")
        assert [line.split()[0] for line in fetched(client, "$", "(UID)")] == [b"1", b"2", b"3"]


def test_dollar_is_reset_by_selection_and_by_a_failing_save(running: RunningCloud) -> None:
    fill(running.cloud.region("eu-dublin"), ALICE, [make_message(i) for i in range(1, 4)])
    with sessions(running, rev2=0, rev1=1) as (client,):
        select(client, "INBOX")

        def saved() -> list[bytes]:
            return [line.split()[0] for line in fetched(client, "$", "(UID)")]

        run(client, "SEARCH", "RETURN", "(SAVE)", "2:3")
        assert saved() == [b"2", b"3"]
        run(client, "SEARCH", "1")  # without SAVE: `$` stays
        assert refused(client, "SEARCH", "RETURN", "(SAVE)", "NOSUCHKEY") == "BAD"
        assert saved() == [b"2", b"3"], "a SEARCH that ends BAD changes nothing"
        status = refused(client, "SEARCH", "RETURN", "(SAVE)", "CHARSET", "KOI8-R", "ALL")
        assert status == "NO"
        assert saved() == [], "a SEARCH (SAVE) that ends NO leaves `$` empty"

        for leave, back in (("UNSELECT", "SELECT"), ("CLOSE", "EXAMINE"), (None, "SELECT")):
            run(client, "SEARCH", "RETURN", "(SAVE)", "ALL")
            assert saved() == [b"1", b"2", b"3"]
            if leave is not None:
                run(client, leave)
            select(client, "INBOX", readonly=back == "EXAMINE")
            assert saved() == [], f"{leave or back} empties `$`"


def test_status_size_is_the_mailbox_octets(running: RunningCloud) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, ALICE, [make_message(1), make_message(2, body="x" * 5000)])
    with sessions(running, rev2=1, rev1=1) as (rev2, rev1):
        capabilities = run(rev1, "CAPABILITY")["CAPABILITY"][0].split()
        assert b"STATUS=SIZE" in capabilities

        def status(client: imaplib.IMAP4) -> bytes:
            return run(client, "STATUS", "INBOX", "(SIZE DELETED MESSAGES)")["STATUS"][0]

        def sizes() -> list[int]:
            return [int(line.split()[-1][:-1]) for line in fetched(rev2, "1:*", "(RFC822.SIZE)")]

        first = status(rev1)  # before any session selected it
        select(rev2, "INBOX")
        total = sum(sizes())
        assert total > 5000
        assert first == f'"INBOX" (SIZE {total} DELETED 0 MESSAGES 2)'.encode()
        assert status(rev2) == first

        # Current after changes in the mailbox: another message, a \Deleted, an expunge.
        fill(region, ALICE, [make_message(3, body="y" * 700)])
        run(rev2, "NOOP")
        total = sum(sizes())
        assert status(rev1) == f'"INBOX" (SIZE {total} DELETED 0 MESSAGES 3)'.encode()
        run(rev2, "STORE", "1", "+FLAGS.SILENT", r"(\Deleted)")
        assert status(rev1) == f'"INBOX" (SIZE {total} DELETED 1 MESSAGES 3)'.encode()
        run(rev2, "EXPUNGE")
        total = sum(sizes())
        assert status(rev1) == f'"INBOX" (SIZE {total} DELETED 0 MESSAGES 2)'.encode()
        listed = run(rev1, "LIST", '""', "INBOX", "RETURN", "(STATUS (SIZE))")["STATUS"]
        assert listed == [f'"INBOX" (SIZE {total})'.encode()]
