"""Both stores: UIDs, MODSEQ change log, flags, expunge under holds, copies, relay dedupe."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borderline.queues import operator_queues
from borderline.store import (
    SPECIAL_USE_MAILBOXES,
    Delivery,
    MailboxNotFound,
    MailStore,
    OutboundMessage,
    OutboundRelay,
    StoredSummaries,
    StoreError,
    run_holding,
)
from borderline.store.mail import (
    MAX_RUN_COLUMNS,
    RUN_SHARE,
    _outside,
    _within,
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


def test_message_columns_agree_with_the_mailbox_they_were_read_with(store: MailStore) -> None:
    inbox = store.mailbox(ALICE, "INBOX")
    empty = store.message_columns(inbox.id)
    assert (empty.uids, empty.uidnext, empty.highestmodseq) == ((), 1, inbox.highestmodseq)
    deliver(store, 3)
    store.set_flags(inbox.id, [1, 3], frozenset({"\\Seen", "$Work"}), "add")
    store.set_flags(inbox.id, [2], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    store.add_hold(ALICE, "case", time.time() + 60)
    store.set_flags(inbox.id, [3], frozenset({"\\Deleted"}), "add")
    assert store.expunge(inbox.id) == [3]  # retained under the hold: not in the columns
    deliver(store, 1)
    columns = store.message_columns(inbox.id)
    now = store.mailbox(ALICE, "INBOX")
    assert columns.uids == (1, 4)
    assert (columns.highestmodseq, columns.uidnext) == (now.highestmodseq, now.uidnext)
    messages = store.messages(inbox.id)
    assert list(columns.modseqs) == [m.modseq for m in messages]
    assert list(columns.flags) == [frozenset({"\\Seen", "$Work"}), frozenset()]
    assert list(columns.sizes) == [m.size for m in messages]
    assert list(columns.internal_dates) == [m.internal_date for m in messages]
    assert list(columns.blob_ids) == [m.blob_id for m in messages]
    assert all(store.blob(b) for b in columns.blob_ids)
    # Messages with the same flags share one set: a big mailbox holds a few.
    deliver(store, 2, flags=frozenset({"\\Seen", "$Work"}))
    flags = store.message_columns(inbox.id).flags
    assert flags[0] is flags[2] is flags[3]
    assert store.message_columns(inbox.id).flag_sets == {
        frozenset({"\\Seen", "$Work"}),
        frozenset(),
    }
    uncounted = store.mailbox(ALICE, "INBOX", recent=False)
    assert (uncounted.id, uncounted.highestmodseq, uncounted.first_recent_uid) == (
        now.id,
        store.message_columns(inbox.id).highestmodseq,
        now.first_recent_uid,
    )
    assert (uncounted.messages, uncounted.unseen, uncounted.recent) == (4, 1, 0)
    store.create_mailbox(ALICE, "Old")
    old = store.mailbox(ALICE, "Old").id
    store.delete_mailbox(ALICE, "Old")
    with pytest.raises(MailboxNotFound):
        store.message_columns(old)


def test_message_columns_since_a_modseq_hold_what_changed_after_it(store: MailStore) -> None:
    deliver(store, 4)
    inbox = store.mailbox(ALICE, "INBOX")
    before = store.message_columns(inbox.id)
    nothing = store.message_columns(inbox.id, since=before.highestmodseq)
    assert (nothing.uids, nothing.expunged) == ((), ())
    assert nothing.highestmodseq == before.highestmodseq
    store.set_flags(inbox.id, [2], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    store.set_flags(inbox.id, [3], frozenset({"\\Flagged"}), "add")
    store.add_hold(ALICE, "case", time.time() + 60)
    store.set_flags(inbox.id, [4], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)  # retained: gone for IMAP all the same
    deliver(store, 1)
    since = store.message_columns(inbox.id, since=before.highestmodseq)
    now = store.message_columns(inbox.id)
    assert since.uids == (3, 5) and since.expunged == (2, 4)
    assert since.flags[0] == {"\\Flagged"}
    assert (since.highestmodseq, since.uidnext) == (now.highestmodseq, now.uidnext)
    assert now.uids == (1, 3, 5)
    assert list(since.modseqs) == [m.modseq for m in store.messages(inbox.id) if m.uid != 1]


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


@pytest.mark.parametrize("seed", [1, 2])
def test_mailbox_counts_follow_every_write_that_changes_them(store: MailStore, seed: int) -> None:
    """STATUS and LIST read the counts kept in each mailbox's row: after deliveries with
    and without \\Seen, copies, flag changes, expunges (retained under a hold, then
    purged) and a mailbox deleted and made again, they equal the messages counted."""
    rng = random.Random(seed)
    store.create_mailbox(ALICE, "Work")
    flag_sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Deleted"})]
    for _ in range(120):
        boxes = {box.name: box for box in store.mailboxes(ALICE)}
        inbox, work = boxes["INBOX"], boxes["Work"]
        source, other = rng.sample([inbox, work], 2)
        uids = [m.uid for m in store.messages(source.id)]
        some = rng.sample(uids, min(len(uids), rng.randint(1, 4)))
        action = rng.randrange(7)
        if action in (0, 1):
            store.deliver(
                [
                    Delivery(ALICE, b"m", 1, time.time(), source.name, rng.choice(flag_sets))
                    for _ in range(rng.randint(1, 3))
                ]
            )
        elif action == 2:
            store.copy(source.id, some, other.id)
        elif action == 3:
            flag = rng.choice(["\\Seen", "\\Deleted"])
            store.set_flags(
                source.id, some, frozenset({flag}), rng.choice(["add", "remove", "set"])
            )
        elif action == 4:
            store.expunge(source.id, rng.choice([None, some]))
        elif action == 5:
            if store.holds():
                for hold in store.holds():
                    store.release_hold(hold.id)
                store.purge_lapsed_holds(0)
            else:
                store.add_hold(ALICE, "REQ-1", time.time() + 3600)
        elif not store.holds():
            store.delete_mailbox(ALICE, "Work")
            store.create_mailbox(ALICE, "Work")
        for box in store.mailboxes(ALICE):
            messages = store.messages(box.id)
            unseen = sum("\\Seen" not in m.flags for m in messages)
            assert (box.messages, box.unseen) == (len(messages), unseen), (action, box.name)
            assert store.mailbox(ALICE, box.name).unseen == unseen


def test_blobs_reads_many_ciphertexts_at_once_and_leaves_out_the_gone(store: MailStore) -> None:
    """FETCH reads a batch of messages in one store call (MailStore.blobs), and
    their summaries: ids that are most of a range are read as the range, others one by
    one, and only those asked for are answered either way."""
    deliver(store, 3, summary=b"summary")
    inbox = store.mailbox(ALICE, "INBOX")
    first, second, third = [m.blob_id for m in store.messages(inbox.id)]
    assert store.blobs([third, first, second, first]) == {
        first: b"blob0",
        second: b"blob1",
        third: b"blob2",
    }
    assert store.blobs([first, third]) == {first: b"blob0", third: b"blob2"}
    summaries = store.summaries(inbox.id, [(1, first), (3, third)])
    assert summaries == ([], {first: b"summary", third: b"summary"}, 2, ())
    assert store.summaries(inbox.id, [(2, second), (4, second + 10_000)]).singles == {
        second: b"summary"
    }
    store.set_flags(inbox.id, [2], frozenset({"\\Deleted"}), "add")
    assert store.expunge(inbox.id) == [2]
    assert store.blobs([first, second, third, third + 1000]) == {first: b"blob0", third: b"blob2"}
    assert store.blobs([]) == {}


def column_data(summaries: StoredSummaries) -> list[tuple[str, bytes]]:
    return [(column.field, column.data) for column in summaries.columns]


def test_summary_columns_name_every_message_of_their_run_while_they_last(
    store: MailStore,
) -> None:
    """A run's columns are stored only if they name exactly the mailbox's messages from
    its first UID to its last and overlap no other run; they are read in place of their
    summaries where they answer every need, and go when any of the run's messages is
    expunged (retained under a hold too) or with its mailbox."""
    deliver(store, 8, summary=b"one")
    inbox = store.mailbox(ALICE, "INBOX").id
    messages = [(m.uid, m.blob_id) for m in store.messages(inbox)]
    first, second = messages[:4], messages[4:]
    both = {"envelope": b"e", "header": b"h"}
    assert not store.add_summary_columns(inbox, first[:2] + first[3:], both)
    wrong = [(uid, blob_id + 1) for uid, blob_id in first]
    assert not store.add_summary_columns(inbox, wrong, both)
    assert not store.add_summary_columns(inbox, [*first, (99, first[0][1])], both)
    assert store.add_summary_columns(inbox, first, both)
    assert not store.add_summary_columns(inbox, messages[3:6], both), "overlaps"
    assert store.add_summary_columns(inbox, second, {"envelope": b"E2"})
    singles = {blob_id: b"one" for _, blob_id in second}
    envelopes = store.summaries(inbox, messages, [("envelope",)])
    assert column_data(envelopes) == [("envelope", b"e"), ("envelope", b"E2")]
    assert envelopes.singles == {}
    headers = store.summaries(inbox, messages, [("envelope",), ("fields:x", "header")])
    assert column_data(headers) == [("envelope", b"e"), ("header", b"h")]
    assert headers.singles == singles, "the second run has no header column"
    assert store.summaries(inbox, messages) == ([], {b: b"one" for _, b in messages}, 8, ())
    assert store.add_summary_column(inbox, 1, 4, "fields:x", b"x")
    assert not store.add_summary_column(inbox, 1, 4, "fields:x", b"again")
    assert not store.add_summary_column(inbox, 1, 5, "fields:y", b"no such run")
    headers = store.summaries(inbox, first, [("fields:x", "header")])
    assert column_data(headers) == [("fields:x", b"x")]
    for more in range(MAX_RUN_COLUMNS - 3):
        assert store.add_summary_column(inbox, 1, 4, f"fields:{more}", b"x")
    assert not store.add_summary_column(inbox, 1, 4, "fields:over", b"x"), "bounded"
    deliver(store, 1, summary=b"new")
    latest = (9, store.messages(inbox)[-1].blob_id)
    after = store.summaries(inbox, [*second, latest], [("envelope",)])
    assert column_data(after) == [("envelope", b"E2")] and after.singles == {latest[1]: b"new"}
    store.set_flags(inbox, [2], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox)
    left = {blob_id: b"one" for uid, blob_id in first if uid != 2}
    after = store.summaries(inbox, messages, [("envelope",)])
    assert column_data(after) == [("envelope", b"E2")] and after.singles == left
    store.add_hold(ALICE, "REQ-9", time.time() + 3600)
    store.set_flags(inbox, [6], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox)
    assert store.summaries(inbox, second, [("envelope",)]).columns == [], (
        "a retained message leaves its run"
    )
    for hold in store.holds():
        store.release_hold(hold.id)
    work = store.create_mailbox(ALICE, "Work")
    store.copy(inbox, [7, 8], work.id)
    copied = [(m.uid, m.blob_id) for m in store.messages(work.id)]
    assert store.add_summary_columns(work.id, copied, both)
    store.delete_mailbox(ALICE, "Work")
    assert store.summaries(work.id, copied, [("envelope",)]) == (
        [],
        {b: b"one" for _, b in copied},
        2,
        (),
    )


@given(
    st.lists(st.integers(1, 60), unique=True).map(sorted),
    st.lists(st.integers(1, 60), unique=True).map(sorted),
)
def test_the_messages_outside_the_runs_are_those_no_run_holds(
    uids: list[int], bounds: list[int]
) -> None:
    """Cut out by bisection, the same as asking for each message which run holds it."""
    runs = list(zip(bounds[::2], bounds[1::2], strict=False))
    messages = [(uid, 1000 + uid) for uid in uids]
    firsts = [first for first, _ in runs]
    held = [b for uid, b in messages if run_holding(runs, firsts, uid) is None]
    assert _outside(runs, messages) == held


def test_a_few_messages_of_a_long_run_are_read_from_their_own_summaries(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's columns stand for its messages only for a read that holds at least
    1/RUN_SHARE of them: one message's ENVELOPE is its own record, not the column of all."""
    deliver(store, 2 * RUN_SHARE, summary=b"one")
    inbox = store.mailbox(ALICE, "INBOX").id
    messages = [(m.uid, m.blob_id) for m in store.messages(inbox)]
    assert store.add_summary_columns(inbox, messages, {"envelope": b"e"})
    needs = [("envelope",)]
    alone = store.summaries(inbox, messages[:1], needs)
    assert (alone.columns, alone.singles) == ([], {messages[0][1]: b"one"})
    for enough in (messages[:2], [messages[0], messages[-1]]):
        found = store.summaries(inbox, enough, needs)
        assert (column_data(found), found.singles) == ([("envelope", b"e")], {})
    assert alone.skipped == ((messages[0][0], messages[-1][0]),), "named, so none is made over it"
    monkeypatch.setattr("borderline.store.mail.RUN_READ_MIN", 1)
    assert column_data(store.summaries(inbox, messages[:1], needs)) == [("envelope", b"e")], (
        "or RUN_READ_MIN of them, however long the run"
    )


def test_one_read_of_summaries_stops_at_a_bound_of_octets(store: MailStore) -> None:
    """A reader bounds by octets what one read brings: the first messages whose summaries
    come to at most that many are read (a run's columns counted whole at its first message
    there), always the first one, and `read` says how many."""
    deliver(store, 8)
    inbox = store.mailbox(ALICE, "INBOX").id
    messages = [(m.uid, m.blob_id) for m in store.messages(inbox)]
    store.add_summaries([(blob_id, b"s" * 10 * uid) for uid, blob_id in messages])
    assert store.add_summary_columns(inbox, messages[2:6], {"envelope": b"e" * 100})
    needs = [("envelope",)]

    def read(asked: list[tuple[int, int]], octets: int, *need: tuple[str]) -> tuple[int, ...]:
        found = store.summaries(inbox, asked, need, octets)
        singles = sorted(uid for uid, blob_id in messages if blob_id in found.singles)
        return (found.read, len(found.columns), *singles)

    assert read(messages, 10 + 20 + 100 + 70 + 80, *needs) == (8, 1, 1, 2, 7, 8)
    assert read(messages, 10 + 20 + 100 + 69, *needs) == (6, 1, 1, 2), "the run, not the 7th"
    assert read(messages, 10 + 20 + 99, *needs) == (2, 0, 1, 2), "the run is read whole or not"
    assert read(messages, 1, *needs) == (1, 0, 1), "the first always"
    assert read(messages[3:], 100, *needs) == (3, 1), "a run begun before counts whole"
    assert read(messages, 60) == (3, 0, 1, 2, 3), "records alone"
    assert store.summaries(inbox, messages, needs).read == 8, "without a bound, all"


def test_one_read_of_summaries_takes_no_more_than_its_bound_from_the_database(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a mailbox's blob ids are interleaved with another account's, whose summaries
    are large (a sender writing to both), the bound holds for what the database hands
    over, not only for what is answered: a range scan would read the others' too."""
    bob = "bob@example.test"
    store.create_account(bob, "hash")
    for _ in range(40):
        store.deliver([Delivery(ALICE, b"a", 1, time.time(), summary=b"s" * 100)])
        store.deliver([Delivery(bob, b"b", 1, time.time(), summary=b"B" * 5000)])
    inbox = store.mailbox(ALICE, "INBOX").id
    messages = [(m.uid, m.blob_id) for m in store.messages(inbox)]
    taken: list[int] = []
    read = store.engine.read

    @contextlib.contextmanager
    def counted() -> Iterator[Any]:
        with read() as tx:
            all_rows = tx.all

            def rows(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                found = all_rows(sql, params)
                taken.append(sum(len(v) for row in found for v in row if isinstance(v, bytes)))
                return found

            monkeypatch.setattr(tx, "all", rows)
            yield tx

    monkeypatch.setattr(store.engine, "read", counted)
    found = store.summaries(inbox, messages, (), 40 * 100)
    assert found.read == 40 and len(found.singles) == 40
    assert sum(taken) <= 40 * 100


@given(
    st.lists(st.integers(1, 40), unique=True).map(sorted),
    st.lists(st.integers(1, 40), unique=True).map(sorted),
    st.lists(st.integers(0, 30), min_size=40, max_size=40),
    st.integers(0, 200),
)
def test_the_messages_read_within_a_bound_are_the_longest_prefix_that_fits(
    uids: list[int], bounds: list[int], sizes: list[int], octets: int
) -> None:
    """Walked once in order, the same as pricing every prefix: a run's octets once if it
    holds any message of the prefix, else each message's own."""
    runs = list(zip(bounds[::2], bounds[1::2], strict=False))
    run_octets = [sizes[first - 1] * 3 for first, _ in runs]
    messages = [(uid, 1000 + uid) for uid in uids]
    lengths = {1000 + uid: sizes[uid - 1] for uid in uids}
    firsts = [first for first, _ in runs]

    def held(prefix: list[tuple[int, int]]) -> list[int]:
        holding = {run_holding(runs, firsts, uid) for uid, _ in prefix} - {None}
        return [at for at, run in enumerate(runs) if run in holding]

    def cost(prefix: list[tuple[int, int]]) -> int:
        alone = sum(lengths[b] for uid, b in prefix if run_holding(runs, firsts, uid) is None)
        return alone + sum(run_octets[at] for at in held(prefix))

    fits = [k for k in range(1, len(messages) + 1) if cost(messages[:k]) <= octets]
    read = max(fits, default=min(1, len(messages)))
    assert _within(messages, runs, run_octets, lengths, octets) == (read, held(messages[:read]))


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


def test_an_operator_lists_retries_and_bounces_relays(store: MailStore) -> None:
    assert store.relay_queue_age() == (0, None) and store.list_relays() == []
    relays = [
        OutboundRelay("us-east", "a@example.org", (f"r{i}@example.test",), b"x" * i) for i in (3, 5)
    ]
    before = time.time()
    store.deliver([], relays)
    first, second = store.list_relays()
    assert (first.queue, first.destination, first.rcpts, first.size) == (
        "relay",
        "us-east",
        ("r3@example.test",),
        3,
    )
    assert (first.attempts, first.last_error, first.bounce) == (0, None, None)
    count, oldest = store.relay_queue_age()
    assert count == 2 and oldest is not None and before - 1 <= oldest <= time.time()
    assert store.list_relays(10, second.id) == [second] and store.list_relays(1) == [first]

    store.relay_failed(first.id, "451 later", time.time() + 3600)
    store.relay_failed(second.id, "451 later", time.time() + 3600)
    assert store.due_relays(time.time()) == []
    assert store.retry_relay(first.id, time.time())
    [due] = store.due_relays(time.time())
    assert (due.id, due.attempts, due.last_error) == (first.id, 1, "451 later")
    # Bounced while its backoff runs: due at once, with the reason.
    store.relay_failed(first.id, "451 later", time.time() + 3600)
    assert store.bounce_relay(second.id, "retired", time.time() + 3600)
    [bounced] = store.due_relays(time.time())
    assert (bounced.id, bounced.bounce) == (second.id, "retired")
    store.relay_done([first.id, second.id])
    assert not store.retry_relay(first.id, time.time())
    assert not store.bounce_relay(second.id, "gone", time.time())
    assert store.list_relays(10, first.id) == []


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


def test_accounts_passwords_and_subscriptions(store: MailStore) -> None:
    with pytest.raises(StoreError, match="already exists"):
        store.create_account(ALICE.upper(), "other")
    store.create_account("Bob@Example.test", "bob-hash")
    assert store.accounts() == [ALICE, "bob@example.test"]
    assert store.password_hash("BOB@example.test") == "bob-hash"
    assert store.password_hash("nobody@example.test") is None
    store.set_password_hash("bob@example.test", "rehashed")
    assert store.password_hash("bob@example.test") == "rehashed"
    with pytest.raises(StoreError, match="no account"):
        store.set_password_hash("nobody@example.test", "x")
    with pytest.raises(StoreError, match="no account"):
        store.create_mailbox("nobody@example.test", "Box")
    store.set_subscribed(ALICE, "Junk", False)
    assert {m.name: m.subscribed for m in store.mailboxes(ALICE)}["Junk"] is False
    with pytest.raises(MailboxNotFound):
        store.set_subscribed(ALICE, "Nope", True)


def test_a_subscription_outlives_its_mailbox(store: MailStore) -> None:
    """RFC 3501 6.3.6: deleting a subscribed mailbox keeps the subscription to its name,
    which a mailbox created or renamed to that name takes back."""
    store.create_mailbox(ALICE, "Old", subscribed=True)
    store.create_mailbox(ALICE, "Plain", subscribed=False)
    store.delete_mailbox(ALICE, "Old")
    store.delete_mailbox(ALICE, "Plain")
    assert store.lost_subscriptions(ALICE) == ["Old"]
    assert store.create_mailbox(ALICE, "Old", subscribed=False).subscribed
    assert {m.name: m.subscribed for m in store.mailboxes(ALICE)}["Old"] is True
    assert store.lost_subscriptions(ALICE) == []
    store.delete_mailbox(ALICE, "Old")
    store.create_mailbox(ALICE, "Other", subscribed=False)
    store.rename_mailbox(ALICE, "Other", "Old")
    assert {m.name: m.subscribed for m in store.mailboxes(ALICE)}["Old"] is True
    store.delete_mailbox(ALICE, "Old")
    store.set_subscribed(ALICE, "Old", False)  # UNSUBSCRIBE of a deleted mailbox's name
    assert store.lost_subscriptions(ALICE) == []
    store.set_subscribed(ALICE, "Old", False)  # not subscribed (any more): nothing to do
    assert store.lost_subscriptions(ALICE) == []
    store.create_mailbox(ALICE, "Again", subscribed=True)
    store.delete_mailbox(ALICE, "Again")
    store.delete_account(ALICE)
    assert store.lost_subscriptions(ALICE) == []


def test_records_are_typed(store: MailStore) -> None:
    inbox = store.mailbox(ALICE, "INBOX")
    [placed] = deliver(store, 1)
    assert (placed.mailbox_id, placed.uid) == (inbox.id, 1)
    work = store.create_mailbox(ALICE, "Work")
    [copied] = store.copy(inbox.id, [1], work.id)
    assert (copied.source_uid, copied.uid) == (1, 1)
    [change] = store.changes_since(inbox.id, 0)
    assert (change.modseq, change.uid, change.kind) == (2, 1, "append")


def test_holds_are_extended_and_released_never_shortened(store: MailStore) -> None:
    now = time.time()
    hold = store.add_hold(ALICE, "REQ-3", now + 60)
    store.extend_hold(hold, now + 120)
    assert [h.until for h in store.holds()] == [now + 120]
    with pytest.raises(StoreError, match="lasts until"):
        store.extend_hold(hold, now + 90)
    with pytest.raises(StoreError, match="no live hold"):
        store.extend_hold(hold + 1000, now + 500)
    deliver(store, 1)
    inbox = store.mailbox(ALICE, "INBOX")
    store.set_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    with pytest.raises(StoreError, match="preservation hold"):
        store.delete_mailbox(ALICE, "INBOX")
    store.release_hold(hold)
    assert store.holds() == []
    assert [h.id for h in store.holds(now=now)] == [hold], "a released hold stays on record"
    with pytest.raises(StoreError, match="no live hold"):
        store.release_hold(hold)
    with pytest.raises(StoreError, match="no live hold"):
        store.extend_hold(hold, now + 500)
    store.delete_mailbox(ALICE, "INBOX")


def test_what_a_hold_retained_is_deleted_once_no_hold_covers_the_account(
    store: MailStore,
) -> None:
    """A hold preserves mail while it lasts. What the user expunged meanwhile was kept
    for ever after it lapsed; now `purge_lapsed_holds` deletes it (a blob a live copy
    shares stays), unless another live hold covers the account."""
    deliver(store, 3)
    inbox = store.mailbox(ALICE, "INBOX")
    work = store.create_mailbox(ALICE, "Work")
    store.copy(inbox.id, [3], work.id)
    first = store.add_hold(ALICE, "REQ-1", time.time() + 3600)
    second = store.add_hold(ALICE, "REQ-2", time.time() + 3600)
    store.set_flags(inbox.id, [1, 2, 3], frozenset({"\\Deleted"}), "add")
    assert store.expunge(inbox.id) == [1, 2, 3]
    kept = store.retained(ALICE)
    assert len(kept) == 3
    store.release_hold(first)
    assert store.purge_lapsed_holds(0) == 0, "the second hold still covers the account"
    assert len(store.retained(ALICE)) == 3
    store.release_hold(second)
    released = time.time()
    assert store.purge_lapsed_holds(released) == 0, "only holds that lapsed after `since`"
    assert store.purge_lapsed_holds(0) == 3
    assert store.retained(ALICE) == []
    assert store.blobs([m.blob_id for m in kept]) == {kept[2].blob_id: b"blob2"}, "the copy's"
    assert [m.uid for m in store.messages(work.id)] == [1]
    assert store.purge_lapsed_holds(0) == 0
    store.delete_mailbox(ALICE, "INBOX")


def racing(
    monkeypatch: pytest.MonkeyPatch,
    first: Callable[[], Any],
    then: Callable[[], Any],
    after: str = "_held",
) -> list[Any]:
    """Run `first`, which waits 0.5 s right after it called MailStore's static method
    `after` (by default: checked the account's holds), and `then` meanwhile; what each
    returned or raised."""
    slow = threading.local()
    original = getattr(MailStore, after)

    def slowed(*args: Any) -> Any:
        answer = original(*args)
        if getattr(slow, "on", False):
            time.sleep(0.5)
        return answer

    monkeypatch.setattr(MailStore, after, staticmethod(slowed))
    outcomes: list[Any] = [None, None]

    def run(at: int, call: Callable[[], Any], wait: float) -> None:
        slow.on = at == 0
        time.sleep(wait)
        try:
            outcomes[at] = call()
        except StoreError as exc:
            outcomes[at] = exc

    threads = [
        threading.Thread(target=run, args=(0, first, 0.0)),
        threading.Thread(target=run, args=(1, then, 0.2)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_holds_and_account_deletions_take_turns(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a purge of what a lapsed hold kept and a deletion of the account
    deadlocked, and a hold added while the account was being deleted outlived it (to cover
    the address's next owner): all of them take the account row's lock first now."""
    deliver(store, 3)
    inbox = store.mailbox(ALICE, "INBOX")
    hold = store.add_hold(ALICE, "REQ-1", time.time() + 3600)
    store.set_flags(inbox.id, [1, 2], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox.id)
    store.release_hold(hold)
    purged, deleted = racing(
        monkeypatch, lambda: store.purge_lapsed_holds(0), lambda: store.delete_account(ALICE)
    )
    assert (purged, deleted) == (2, None)
    with pytest.raises(StoreError, match="no account"):
        store.add_hold(ALICE, "REQ-2", time.time() + 3600)
    store.create_account(ALICE, "hash")
    refused, added = racing(
        monkeypatch,
        lambda: store.delete_account(ALICE),
        lambda: store.add_hold(ALICE, "REQ-3", time.time() + 3600),
    )
    assert refused is None and isinstance(added, StoreError), "the deletion went first"
    assert store.holds() == []


def test_a_hold_added_while_an_expunge_runs_is_seen_or_waits_for_it(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an expunge that had found no hold deleted the messages after a hold
    placed meanwhile had committed, so mail went while it was held. An expunge takes the
    account row's lock first now, as adding a hold does: the hold waits for it."""
    deliver(store, 2)
    inbox = store.mailbox(ALICE, "INBOX")
    store.set_flags(inbox.id, [1], frozenset({"\\Deleted"}), "add")
    (expunged, expunge_ended), (hold, hold_ended) = racing(
        monkeypatch,
        lambda: (store.expunge(inbox.id), time.monotonic()),
        lambda: (store.add_hold(ALICE, "REQ-1", time.time() + 3600), time.monotonic()),
    )
    assert expunged == [1] and isinstance(hold, int)
    assert hold_ended >= expunge_ended, "the hold was in place before the expunge ended"


def test_an_expunge_and_a_purge_or_an_account_deletion_at_once_both_end(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an expunge that updated its mailbox's row twice (counts, then MODSEQ)
    locked the account's row at the second (the foreign key checked again) while a purge
    or an account deletion held that lock and waited for the mailbox: a deadlock, one of
    them failed. The row is updated once, after the account's lock is taken."""
    deliver(store, 3)
    inbox = store.mailbox(ALICE, "INBOX")
    store.set_flags(inbox.id, [1, 2], frozenset({"\\Deleted"}), "add")
    store.release_hold(store.add_hold(ALICE, "REQ-1", time.time() + 3600))
    outcomes = racing(
        monkeypatch, lambda: store.expunge(inbox.id, [1]), lambda: store.purge_lapsed_holds(0)
    )
    assert outcomes == [[1], 0]
    assert (store.mailbox(ALICE, "INBOX").messages, len(store.messages(inbox.id))) == (2, 2)
    outcomes = racing(
        monkeypatch, lambda: store.expunge(inbox.id, [2]), lambda: store.delete_account(ALICE)
    )
    assert outcomes == [[2], None]
    assert store.accounts() == []


def test_the_last_two_copies_of_a_message_expunged_at_once_take_its_blob_with_them(
    store: MailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two expunges of the last two messages sharing a blob, at once in two mailboxes: on
    PostgreSQL each saw the other's message still there and kept the blob, which nothing
    then deleted (a user's deleted mail kept for ever). They take turns on the account's
    row now, and the second deletes the blob."""
    [(_, uid)] = deliver(store, 1)
    inbox = store.mailbox(ALICE, "INBOX")
    work = store.create_mailbox(ALICE, "Work")
    store.copy(inbox.id, [uid], work.id)
    [blob_id] = {m.blob_id for m in store.messages(inbox.id) + store.messages(work.id)}
    for box in (inbox, work):
        store.set_flags(box.id, [1], frozenset({"\\Deleted"}), "add")
    outcomes = racing(
        monkeypatch,
        lambda: store.expunge(inbox.id),
        lambda: store.expunge(work.id),
        after="_next_modseqs",
    )
    assert outcomes == [[1], [1]]
    assert store.blobs([blob_id]) == {}


def test_rename_refuses_to_move_a_mailbox_into_itself_and_keeps_the_hierarchy(
    store: MailStore,
) -> None:
    for name in ("par", "par/kid", "par/kid/kid/deeper", "x"):
        store.create_mailbox(ALICE, name)
    with pytest.raises(StoreError, match="into itself"):
        store.rename_mailbox(ALICE, "par", "par/kid/deeper")
    with pytest.raises(StoreError, match="already exists"):
        store.rename_mailbox(ALICE, "par/kid", "x")
    # Names shrink: "par/kid/kid/deeper" becomes "par/kid/deeper" while "par/kid" is renamed.
    store.rename_mailbox(ALICE, "par", "p")
    store.rename_mailbox(ALICE, "p/kid", "p/k")
    store.rename_mailbox(ALICE, "p", "longer/than/before")
    names = {m.name for m in store.mailboxes(ALICE)} - {n for n, _ in SPECIAL_USE_MAILBOXES}
    assert names == {
        "longer/than/before",
        "longer/than/before/k",
        "longer/than/before/k/kid/deeper",
        "x",
    }


def test_outbound_queue_shrinks_per_recipient_and_answers_an_operator(store: MailStore) -> None:
    """Mail to the Internet: queued with the rest of a delivery in one commit; delivered
    recipients leave the item; an operator lists, shows, retries and bounces items."""
    message = OutboundMessage("remote.test", ALICE, ("a@remote.test", "b@remote.test"), b"c", 9)
    with pytest.raises(MailboxNotFound):
        store.deliver([Delivery(ALICE, b"y", 1, time.time(), mailbox="Nope")], [], [message])
    assert store.queued_outbound() == 0, "nothing half written"
    store.deliver(
        [], [], [message, OutboundMessage("other.test", ALICE, ("c@other.test",), b"d", 1)]
    )
    first, second = store.list_outbound()
    assert (first.rcpts, first.size, first.attempts, first.bounce) == (message.rcpts, 9, 0, None)
    assert store.outbound_blob(first.id) == b"c"
    later = time.time() + 600
    store.outbound_retry(first.id, ["b@remote.test"], "421 busy", later, delay_notified=True)
    assert [i.id for i in store.due_outbound(time.time())] == [second.id]
    shown = store.outbound_item(first.id)
    assert shown is not None
    assert (shown.rcpts, shown.attempts, shown.last_error, shown.delay_notified) == (
        ("b@remote.test",),
        1,
        "421 busy",
        True,
    )
    assert store.retry_outbound(first.id) == 1
    assert {i.id for i in store.due_outbound(time.time())} == {first.id, second.id}
    store.outbound_retry(first.id, ["b@remote.test"], "421 busy", later, delay_notified=True)
    assert store.retry_outbound() == 2, "every item"
    assert {i.id for i in store.due_outbound(time.time())} == {first.id, second.id}
    assert store.bounce_outbound(second.id, "gone", now=later)
    [bounced] = [i for i in store.due_outbound(later) if i.id == second.id]
    assert bounced.bounce == "gone"
    store.outbound_done([first.id, second.id])
    assert store.queued_outbound() == 0 and store.outbound_item(first.id) is None
    assert not store.retry_outbound(first.id) and not store.bounce_outbound(first.id, "x")
    assert store.outbound_blob(first.id) is None


def test_an_operator_sees_both_queues_alike(store: MailStore) -> None:
    """`borderline queue` and /metrics read the relay and the outbound queue through one
    interface: the same entries, depth, retry and bounce."""
    queues = operator_queues(store)
    assert sorted(queues) == ["outbound", "relay"]
    assert queues["outbound"].depth() == (0, None)
    store.deliver(
        [],
        [OutboundRelay("us-east", ALICE, ("r@example.test",), b"sealed")],
        [OutboundMessage("remote.test", ALICE, ("a@remote.test",), b"blob", 4)],
    )
    [relay] = queues["relay"].entries()
    [outbound] = queues["outbound"].entries()
    assert (outbound.queue, outbound.destination, outbound.rcpts, outbound.size) == (
        "outbound",
        "remote.test",
        ("a@remote.test",),
        4,
    )
    assert queues["outbound"].entry(outbound.id) == outbound
    count, oldest = queues["outbound"].depth()
    assert count == 1 and oldest == outbound.created
    later = time.time() + 3600
    store.outbound_retry(outbound.id, ["a@remote.test"], "421 busy", later, delay_notified=False)
    assert queues["outbound"].retry(outbound.id, time.time())
    assert [i.id for i in store.due_outbound(time.time())] == [outbound.id]
    assert queues["outbound"].bounce(outbound.id, "retired", time.time())
    shown = queues["outbound"].entry(outbound.id)
    assert shown is not None and shown.bounce == "retired"
    assert queues["relay"].entry(relay.id) == relay
    store.outbound_done([outbound.id])
    assert queues["outbound"].entry(outbound.id) is None
    assert not queues["outbound"].retry(outbound.id, time.time())
    assert not queues["outbound"].bounce(outbound.id, "gone", time.time())
