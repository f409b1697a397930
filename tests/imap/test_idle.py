"""IDLE (RFC 2177) without polling: a change made in this process wakes the IDLE sessions
on that mailbox at once, and one made elsewhere (here: written to the store directly, as an
ingest-only worker does) is found by one store read per interval for all of them."""

from __future__ import annotations

import os
import smtplib
import threading
from email.message import EmailMessage

import pytest

from borderline.cloud import Cloud
from borderline.imap import server as imap_server
from borderline.notices import NoticeReceiver, NoticeSender
from borderline.store import MailStore
from borderline.store.base import Change
from tests.conftest import RunningCloud
from tests.imap.conftest import Raw, fill, make_message, raw_login

IDLERS = 12


def idle(running: RunningCloud) -> Raw:
    raw = raw_login(running)
    raw.command(b"s", b"SELECT INBOX")
    raw.send(b"i IDLE\r\n")
    assert raw.file.readline() == b"+ idling\r\n"
    return raw


def test_idle_sessions_are_woken_not_polling(
    running: RunningCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = running.cloud.region("eu-dublin")
    fill(region, "alice@example.test", [make_message(0)])
    reads = {"changes_since": 0}
    lock = threading.Lock()
    original = MailStore.changes_since

    def counted(store: MailStore, mailbox_id: int, modseq: int) -> list[Change]:
        with lock:
            reads["changes_since"] += 1
        return original(store, mailbox_id, modseq)

    idlers = [idle(running) for _ in range(IDLERS)]
    try:
        monkeypatch.setattr(MailStore, "changes_since", counted)
        # Mail through SMTP: every IDLE session hears of it (woken by the delivery itself).
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "x@example.org", "alice@example.test", "hi"
        msg.set_content("new mail while idling")
        listen = region.section.smtp
        with smtplib.SMTP(listen.host, listen.port, timeout=30) as smtp:
            smtp.send_message(msg)
        for raw in idlers:
            assert raw.file.readline() == b"* 2 EXISTS\r\n"
            assert raw.file.readline().endswith(b" RECENT\r\n")
        # Mail written to the store by another process: found by the server's watcher.
        fill(region, "alice@example.test", [make_message(1)])
        for raw in idlers:
            assert raw.file.readline() == b"* 3 EXISTS\r\n"
            assert raw.file.readline().endswith(b" RECENT\r\n")
        woken = reads["changes_since"]
        assert woken <= 2 * IDLERS + 2, "one sync per session and change"
        # Nothing changes: nobody reads the store, however long they idle.
        other = raw_login(running)
        other.command(b"n", b"NOOP")  # a round trip's worth of time on the server
        assert other.command(b"w", b"STATUS INBOX (MESSAGES)")[0].endswith(b"(MESSAGES 3)\r\n")
        threading.Event().wait(2.5)
        assert reads["changes_since"] == woken, "IDLE sessions poll the store"
        other.close()
        for raw in idlers:
            raw.send(b"DONE\r\n")
            assert raw.until(b"i") == [b"i OK IDLE terminated\r\n"]
    finally:
        for raw in idlers:
            raw.close()


@pytest.mark.one_engine("the notice travels between processes; the store only holds the mail")
def test_an_ingest_workers_notice_wakes_idle_sessions_at_once(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_server, "WATCH_INTERVAL", 3600.0)  # only the notice can wake them
    receiver = NoticeReceiver()
    running = RunningCloud(cloud, notices=receiver)
    worker = NoticeSender(os.dup(receiver.worker_fd))  # the end a worker inherits
    region = cloud.region("eu-dublin")
    try:
        fill(region, "alice@example.test", [make_message(0)])
        idler = idle(running)
        fill(region, "alice@example.test", [make_message(1)])  # as a worker commits it
        worker.delivered("eu-dublin", {region.store.mailbox("alice@example.test", "INBOX").id})
        assert idler.file.readline() == b"* 2 EXISTS\r\n"
        idler.close()
    finally:
        worker.close()
        running.stop()
        receiver.close()
