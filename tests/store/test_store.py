"""Both stores: UIDs, MODSEQ change log, flags, expunge under holds, copies, relay dedupe."""

from __future__ import annotations

import time

import pytest

from borderline.store import (
    Delivery,
    MailboxNotFound,
    MailStore,
    OutboundRelay,
    StoreError,
)
from tests.store.conftest import ALICE


def deliver(store: MailStore, count: int, **kw: object) -> list[tuple[int, int]]:
    return store.deliver(
        [Delivery(ALICE, f"blob{i}".encode(), 10 + i, time.time(), **kw) for i in range(count)]  # type: ignore[arg-type]
    )


def test_special_use_mailboxes_and_uids(store: MailStore) -> None:
    names = {m.name: m.special_use for m in store.mailboxes(ALICE)}
    assert names == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
    }
    validities = {m.uidvalidity for m in store.mailboxes(ALICE)}
    assert len(validities) == 5, "UIDVALIDITY differs per mailbox"
    placed = deliver(store, 3)
    assert [uid for _, uid in placed] == [1, 2, 3]
    inbox = store.mailbox(ALICE, "INBOX")
    assert (inbox.messages, inbox.unseen, inbox.uidnext) == (3, 3, 4)
    assert [m.modseq for m in store.messages(inbox.id)] == sorted(
        m.modseq for m in store.messages(inbox.id)
    )


def test_flags_modseq_and_change_log(store: MailStore) -> None:
    deliver(store, 2)
    inbox = store.mailbox(ALICE, "INBOX")
    before = inbox.highestmodseq
    changed = store.set_flags(inbox.id, [1], frozenset({"\\Seen"}), "add")
    assert changed[0].flags == {"\\Seen"} and changed[0].modseq > before
    assert store.set_flags(inbox.id, [1], frozenset({"\\Seen"}), "add") == [], "no-op, no modseq"
    assert store.changes_since(inbox.id, before) == [(changed[0].modseq, 1, "flags")]
    assert store.mailbox(ALICE, "INBOX").unseen == 1
    with pytest.raises(StoreError):
        store.set_flags(inbox.id, [1], frozenset(), "toggle")


def test_expunge_deletes_or_retains_under_a_hold(store: MailStore) -> None:
    deliver(store, 3)
    inbox = store.mailbox(ALICE, "INBOX")
    store.set_flags(inbox.id, [1, 2], frozenset({"\\Deleted"}), "add")
    assert store.expunge(inbox.id, uids=[2]) == [2]
    assert [m.uid for m in store.messages(inbox.id)] == [1, 3]
    assert store.retained(ALICE) == []
    store.add_hold(ALICE, "REQ-1", time.time() + 3600)
    assert store.expunge(inbox.id) == [1]
    assert [m.uid for m in store.messages(inbox.id)] == [3]
    [kept] = store.retained(ALICE)
    assert kept.uid == 1 and store.blob(kept.blob_id) == b"blob0"
    assert [k for _, _, k in store.changes_since(inbox.id, 0)].count("expunge") == 2
    with pytest.raises(StoreError, match="preservation hold"):
        store.delete_mailbox(ALICE, "INBOX")


def test_copy_shares_ciphertext_and_rename_moves_children(store: MailStore) -> None:
    deliver(store, 2)
    inbox = store.mailbox(ALICE, "INBOX")
    work = store.create_mailbox(ALICE, "Work")
    store.create_mailbox(ALICE, "Work/2026")
    assert store.copy(inbox.id, [2, 1, 99], work.id) == [(1, 1), (2, 2)]
    originals = {m.blob_id for m in store.messages(inbox.id)}
    assert {m.blob_id for m in store.messages(work.id)} == originals
    store.rename_mailbox(ALICE, "Work", "Archive")
    assert {m.name for m in store.mailboxes(ALICE)} >= {"Archive", "Archive/2026"}
    store.set_flags(inbox.id, [1, 2], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    archive = store.mailbox(ALICE, "Archive")
    assert [store.blob(m.blob_id) for m in store.messages(archive.id)] == [b"blob0", b"blob1"]
    with pytest.raises(MailboxNotFound):
        store.mailbox(ALICE, "Work")


def test_relayed_message_is_stored_once_and_relays_commit_atomically(
    store: MailStore,
) -> None:
    twice = Delivery(ALICE, b"x", 1, time.time(), relay_id="r-1")
    assert len(store.deliver([twice])) == 1
    assert store.deliver([twice]) == [], "a retried relay is not stored again"
    relay = OutboundRelay("us-east", "a@example.org", ("bob@example.test",), b"sealed")
    with pytest.raises(MailboxNotFound):
        store.deliver([Delivery(ALICE, b"y", 1, time.time(), mailbox="Nope")], [relay])
    assert store.queued_relays() == 0, "nothing half written"
    store.deliver([], [relay])
    [item] = store.due_relays(time.time() + 1)
    store.relay_failed(item.id, "4xx down", time.time() + 60)
    assert store.due_relays(time.time()) == []
    store.relay_done([item.id])
    assert store.queued_relays() == 0


def test_a_mailbox_with_only_retained_messages_is_kept_until_the_hold_lapses(
    store: MailStore,
) -> None:
    box = store.create_mailbox(ALICE, "Old")
    store.deliver([Delivery(ALICE, b"kept", 4, time.time(), mailbox="Old")])
    store.add_hold(ALICE, "REQ-2", time.time() + 0.5)
    store.set_flags(box.id, [1], frozenset({"\\Deleted"}), "add")
    assert store.expunge(box.id) == [1]
    with pytest.raises(StoreError, match="preservation hold"):
        store.delete_mailbox(ALICE, "Old")
    [kept] = store.retained(ALICE)
    assert store.blob(kept.blob_id) == b"kept"
    time.sleep(0.6)
    store.delete_mailbox(ALICE, "Old")
    assert store.retained(ALICE) == []
    with pytest.raises(StoreError, match="no blob"):
        store.blob(kept.blob_id)
