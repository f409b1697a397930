"""A selected mailbox deleted by another session ends the selection; nothing a session holds
reaches another account (issue 15 item 1, DESIGN invariant 11)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, make_message

ALICE, CAROL = "alice@example.test", "carol@example.test"
BYE = b"* BYE Selected mailbox was deleted, have to disconnect\r\n"


def logged_in(running: RunningCloud, address: str = ALICE) -> Raw:
    raw = Raw(running)
    reply = raw.command(b"l", b'LOGIN %s "%s"' % (address.encode(), PASSWORD.encode()))
    assert reply[-1].startswith(b"l OK"), reply
    return raw


def selecting(running: RunningCloud, mailbox: bytes) -> Raw:
    raw = logged_in(running)
    assert raw.command(b"s", b"SELECT " + mailbox)[-1].startswith(b"s OK")
    return raw


def owner_of_work(running: RunningCloud, messages: int) -> Raw:
    """A session of alice's that made the mailbox Work, with this many messages in it."""
    owner = logged_in(running)
    owner.command(b"c", b"CREATE Work")
    dublin = running.cloud.region("eu-dublin")
    fill(dublin, ALICE, [make_message(i) for i in range(messages)], mailbox="Work")
    return owner


def ended(raw: Raw) -> bool:
    """Whether the server said BYE for the deleted mailbox, then closed the connection."""
    first = raw.file.readline()
    assert first == BYE, first  # the old code answered with the new owner's messages
    closed = raw.file.readline() == b""
    raw.close()
    return closed


def test_a_deleted_selected_mailbox_ends_the_session_and_reaches_no_other_account(
    running: RunningCloud,
) -> None:
    dublin = running.cloud.region("eu-dublin")
    owner = owner_of_work(running, 3)
    commands = [
        b"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)",
        b"UID FETCH 1:* (BODY.PEEK[])",
        b"STORE 1:* +FLAGS (\\Deleted)",
        b"EXPUNGE",
        b"UID EXPUNGE 1:*",
        b"SEARCH ALL",
        b"COPY 1:* INBOX",
        b"MOVE 1:* INBOX",
        b"NOOP",
        b"CLOSE",
    ]
    sessions = [selecting(running, b"Work") for _ in commands]
    assert owner.command(b"d", b"DELETE Work")[-1] == b"d OK DELETE completed\r\n"
    # A new account: on SQLite its INBOX took the deleted mailbox's id, and the sessions
    # above saw its UIDs, flags and sizes, and expunged its mail.
    running.cloud.add_account(CAROL, "eu-dublin", PASSWORD)
    fill(dublin, CAROL, [make_message(i) for i in range(5)])
    carol_inbox = dublin.store.mailbox(CAROL, "INBOX")
    carol_before = dublin.store.messages(carol_inbox.id)
    alice_before = dublin.store.messages(dublin.store.mailbox(ALICE, "INBOX").id)
    for raw, command in zip(sessions, commands, strict=True):
        raw.send(b"x " + command + b"\r\n")
        assert ended(raw), command
    assert dublin.store.messages(carol_inbox.id) == carol_before, "carol's mail is untouched"
    assert dublin.store.messages(dublin.store.mailbox(ALICE, "INBOX").id) == alice_before
    owner.close()


def test_idle_on_a_deleted_mailbox_ends_at_once(running: RunningCloud) -> None:
    owner = owner_of_work(running, 0)
    idler = selecting(running, b"Work")
    idler.send(b"i IDLE\r\n")
    assert idler.file.readline() == b"+ idling\r\n"
    owner.command(b"d", b"DELETE Work")
    assert ended(idler)
    owner.close()


def test_a_renamed_selected_mailbox_stays_selected_under_its_new_name(
    running: RunningCloud,
) -> None:
    dublin = running.cloud.region("eu-dublin")
    owner = owner_of_work(running, 2)
    reader = selecting(running, b"Work")
    owner.command(b"r", b"RENAME Work Archive")
    owner.command(b"c", b"CREATE Work")  # a new mailbox under the old name: not the selected one
    fill(dublin, ALICE, [make_message(9)], mailbox="Work")
    assert reader.command(b"f", b"FETCH 1:* (UID)") == [
        b"* 1 FETCH (UID 1)\r\n",
        b"* 2 FETCH (UID 2)\r\n",
        b"f OK FETCH completed\r\n",
    ]
    fill(dublin, ALICE, [make_message(3)], mailbox="Archive")
    assert reader.command(b"n", b"NOOP") == [
        b"* 3 EXISTS\r\n",
        b"* 3 RECENT\r\n",
        b"n OK NOOP completed\r\n",
    ]
    reader.close()
    owner.close()


def test_a_deleted_account_ends_its_sessions_before_a_new_owner_of_its_address_logs_in(
    running: RunningCloud,
) -> None:
    """A session of a deleted account went on: its selected INBOX answered the old flags,
    and once the address was given to a new account, the old session read that account's
    mail with the old password. Now every session of the account ends at its next command,
    selected or not, and one in IDLE at once."""
    dublin = running.cloud.region("eu-dublin")
    fill(dublin, ALICE, [make_message(i) for i in range(2)])
    selected, unselected, idler = (
        selecting(running, b"INBOX"),
        logged_in(running),
        logged_in(running),
    )
    idler.send(b"i IDLE\r\n")
    assert idler.file.readline() == b"+ idling\r\n"
    running.cloud.delete_account(ALICE)
    gone = b"* BYE Account was deleted, have to disconnect\r\n"
    assert idler.file.readline() == gone and idler.file.readline() == b""
    running.cloud.add_account(ALICE, "eu-dublin", "the new owner's password")
    fill(dublin, ALICE, [make_message(7, body="the new owner's mail")])
    for raw, command in ((selected, b"FETCH 1:* (FLAGS)"), (unselected, b"SELECT INBOX")):
        raw.send(b"x " + command + b"\r\n")
        assert raw.file.readline() == gone, command
        assert raw.file.readline() == b"", "closed"
    for raw in (selected, unselected, idler):
        raw.close()


@pytest.mark.usefixtures("deleted_while_checked")
def test_a_login_that_an_account_deletion_overtakes_fails(running: RunningCloud) -> None:
    """The password check takes Argon2's time. An account deleted meanwhile was logged
    into with the password it had, and the session counted as one of the address's next
    owner (its generation was read after the check). Now such a login fails."""
    raw = Raw(running)
    reply = raw.command(b"l", b'LOGIN %s "%s"' % (ALICE.encode(), PASSWORD.encode()))
    assert reply[-1].startswith(b"l NO [AUTHENTICATIONFAILED]"), reply
    raw.close()
