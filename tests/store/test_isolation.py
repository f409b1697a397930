"""Invariant 11 at the store: ids are never reused, so an id a session still holds can never
name another account's data; UIDVALIDITY never repeats, even after a delete."""

from __future__ import annotations

import time

import pytest

from borderline.store import Delivery, MailboxNotFound, MailStore, OutboundRelay, StoreError
from tests.store.conftest import ALICE

CAROL = "carol@example.test"


def test_a_deleted_mailboxs_id_never_names_another_accounts_mailbox(store: MailStore) -> None:
    """Issue 15 #1: SQLite gave a freed id to a new account's INBOX, so a session that had
    the deleted mailbox selected read, flagged and expunged the other account's mail."""
    gone = store.create_mailbox(ALICE, "Gone")  # the highest mailbox id
    store.deliver([Delivery(ALICE, b"alice's", 7, time.time(), mailbox="Gone")])
    store.delete_mailbox(ALICE, "Gone")
    store.create_account(CAROL, "hash")
    carol_inbox = store.mailbox(CAROL, "INBOX")
    store.deliver([Delivery(CAROL, b"carol's", 7, time.time(), flags=frozenset({"\\Deleted"}))])
    assert gone.id not in {m.id for m in store.mailboxes(CAROL)}
    # What the stale session would do with the id it holds:
    with pytest.raises(MailboxNotFound):
        store.mailbox_by_id(ALICE, gone.id)
    assert store.messages(gone.id) == []
    assert store.set_flags(gone.id, [1], frozenset({"\\Seen"}), "add") == []
    with pytest.raises(MailboxNotFound):
        store.expunge(gone.id)
    assert store.mailbox_by_id(CAROL, carol_inbox.id).messages == 1
    with pytest.raises(MailboxNotFound):
        store.mailbox_by_id(ALICE, carol_inbox.id)
    [kept] = store.messages(carol_inbox.id)
    assert kept.flags == {"\\Deleted"} and store.blob(kept.blob_id) == b"carol's"


def test_blob_and_relay_ids_are_never_reused(store: MailStore) -> None:
    store.deliver([Delivery(ALICE, b"one", 3, time.time())])
    inbox = store.mailbox(ALICE, "INBOX")
    old_blob = store.messages(inbox.id)[0].blob_id
    store.set_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    store.deliver([Delivery(ALICE, b"two", 3, time.time())])
    assert store.messages(inbox.id)[0].blob_id > old_blob
    relay = OutboundRelay("us-east", "a@example.org", ("bob@example.test",), b"sealed")
    store.deliver([], [relay])
    [item] = store.due_relays(time.time() + 1)
    store.relay_done([item.id])
    store.deliver([], [relay])
    [again] = store.due_relays(time.time() + 1)
    assert again.id > item.id


def test_uidvalidity_grows_across_delete_and_create_in_the_same_second(store: MailStore) -> None:
    """Today's SQLite took the maximum over existing mailboxes, which a delete lowers."""
    first = store.create_mailbox(ALICE, "Again")
    store.delete_mailbox(ALICE, "Again")
    second = store.create_mailbox(ALICE, "Again")
    assert second.uidvalidity > first.uidvalidity
    assert second.id > first.id
    assert store.mailbox_by_id(ALICE, second.id).name == "Again"


def test_messages_are_never_copied_to_another_accounts_mailbox(store: MailStore) -> None:
    store.create_account(CAROL, "hash")
    store.deliver([Delivery(ALICE, b"alice's", 7, time.time())])
    inbox = store.mailbox(ALICE, "INBOX")
    with pytest.raises(StoreError, match="another account"):
        store.copy(inbox.id, [1], store.mailbox(CAROL, "INBOX").id)
    assert store.mailbox(CAROL, "INBOX").messages == 0
