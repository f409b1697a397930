"""A preservation hold keeps what the user expunges while it lasts; once no hold covers
the account any more, the running server deletes it (runtime.py, HOLD_PURGE_SECONDS)."""

from __future__ import annotations

import time

import pytest

from borderline import runtime
from borderline.cloud import Cloud
from tests.conftest import RunningCloud
from tests.imap.conftest import fill, make_message

ALICE = "alice@example.test"


def test_a_running_server_deletes_what_a_lapsed_hold_retained(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "HOLD_PURGE_SECONDS", 0.2)
    store = cloud.region("eu-dublin").store
    fill(cloud.region("eu-dublin"), ALICE, [make_message(1), make_message(2)])
    inbox = store.mailbox(ALICE, "INBOX").id
    hold = store.add_hold(ALICE, "REQ-9", time.time() + 3600)
    store.set_flags(inbox, [1], frozenset({"\\Deleted"}), "add")
    assert store.expunge(inbox) == [1]
    running = RunningCloud(cloud)
    try:
        time.sleep(1.5)  # several rounds of the purge
        assert len(store.retained(ALICE)) == 1, "kept while the hold lasts"
        store.release_hold(hold)
        deadline = time.monotonic() + 10
        while store.retained(ALICE) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.retained(ALICE) == []
        assert [m.uid for m in store.messages(inbox)] == [2]
    finally:
        running.stop()
