"""Debian's mail clients against a live region: isync (mbsync) and getmail6."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope

from borderline.cloud import Region
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import fill, make_message
from tests.require import require

MESSAGES = 1000


def maildir_files(folder: Path) -> list[Path]:
    return sorted([*(folder / "new").glob("*"), *(folder / "cur").glob("*")])


def mbsync_config(tmp_path: Path, region: Region) -> Path:
    listen = region.section.imaps
    assert listen is not None
    local = tmp_path / "maildir"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount borderline
Host {listen.host}
Port {listen.port}
User alice@example.test
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {region.root / "tls" / "cert.pem"}

IMAPStore remote
Account borderline

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel everything
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
"""
    )
    return config


def mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["mbsync", "-c", str(config), "-a"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_mbsync_full_sync_both_ways(running: RunningCloud, tmp_path: Path) -> None:
    require(shutil.which("mbsync") is not None, "isync (mbsync)", "apt-get install isync")
    region = running.cloud.region("eu-dublin")
    sent = [make_message(i, body=f"message number {i}\n" * 20) for i in range(MESSAGES)]
    fill(region, "alice@example.test", sent)
    config = mbsync_config(tmp_path, region)
    mbsync(config)
    local = tmp_path / "maildir"
    inbox = maildir_files(local / "INBOX")
    assert len(inbox) == MESSAGES
    # mbsync stores LF line ends and adds its X-TUID header; otherwise byte for byte.
    received = sorted(
        b"".join(
            line for line in p.read_bytes().splitlines(True) if not line.startswith(b"X-TUID:")
        )
        for p in inbox
    )
    assert received == sorted(m.replace(b"\r\n", b"\n") for m in sent)
    assert {p.name for p in local.iterdir()} >= {"INBOX", "Sent", "Drafts", "Trash", "Junk"}

    # Up: a new local folder of 1,000 messages, one read and one deleted locally.
    uploads = local / "Uploads"
    for sub in ("new", "cur", "tmp"):
        (uploads / sub).mkdir(parents=True)
    for i in range(MESSAGES):
        (uploads / "new" / f"1700000000.{i}.local").write_bytes(make_message(10_000 + i))
    first = inbox[0]
    first.rename(local / "INBOX" / "cur" / (first.name.split(":")[0] + ":2,S"))
    inbox[1].rename(local / "INBOX" / "cur" / (inbox[1].name.split(":")[0] + ":2,ST"))
    mbsync(config)
    store = region.store
    box = store.mailbox("alice@example.test", "Uploads")
    assert box.messages == MESSAGES
    messages = store.messages(store.mailbox("alice@example.test", "INBOX").id)
    assert len(messages) == MESSAGES - 1, "the locally trashed message was expunged"
    assert sum("\\Seen" in m.flags for m in messages) == 1

    # Down again: an expunge on the server reaches the local copy.
    inbox_id = store.mailbox("alice@example.test", "INBOX").id
    store.set_flags(inbox_id, [messages[-1].uid], frozenset({"\\Deleted"}), "add")
    store.expunge(inbox_id)
    mbsync(config)
    assert len(maildir_files(local / "INBOX")) == MESSAGES - 2


class _Collector:
    """An LMTP server's handler keeping what it is given, as a local delivery agent would."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(content if isinstance(content, bytes) else content.encode())
        return "250 2.0.0 delivered"


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler)


@pytest.mark.slow
@pytest.mark.one_engine("getmail's IMAP client is the subject; the IMAP suite runs on both")
def test_getmail_reads_the_mailbox(running: RunningCloud, tmp_path: Path) -> None:
    require(shutil.which("getmail") is not None, "getmail6", "apt-get install getmail6")
    region = running.cloud.region("eu-dublin")
    sent = [make_message(i) for i in range(MESSAGES)]
    fill(region, "alice@example.test", sent)
    listen = region.section.imap
    assert listen is not None
    # getmail hands each message to an LMTP server. Its Maildir and mbox destinations fork a
    # child per message and install their SIGCHLD handler only after the fork, so a child
    # that exits quickly leaves getmail waiting for a signal it missed (getmail6 6.18).
    collector = _Collector()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lmtp = _LmtpController(collector, hostname="127.0.0.1", port=port)
    lmtp.start()
    (tmp_path / "getmailrc").write_text(
        f"""[retriever]
type = SimpleIMAPRetriever
server = {listen.host}
port = {listen.port}
username = alice@example.test
password = {PASSWORD}
mailboxes = ("INBOX",)

[destination]
type = MDA_lmtp
host = 127.0.0.1
port = {port}
override = alice@example.test

[options]
read_all = true
delete = false
verbose = 0
"""
    )
    try:
        done = subprocess.run(
            ["getmail", f"--getmaildir={tmp_path}", "--rcfile=getmailrc"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        lmtp.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(collector.messages) == MESSAGES
    # getmail adds trace fields above the header; the rest is unchanged.
    by_id = {}
    for content in collector.messages:
        content = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        by_id[content.split(b"Message-ID: ")[1].split(b"\r\n")[0]] = content
    assert len(by_id) == MESSAGES
    for i, message in enumerate(sent):
        header, body = message.split(b"\r\n\r\n", 1)
        got_header, got_body = by_id[b"<m%d@example.org>" % i].split(b"\r\n\r\n", 1)
        assert header in got_header and got_body == body
