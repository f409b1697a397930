"""A full disk under the transparency log refuses content reads with NO [UNAVAILABLE] while it
is full, and reads come back by themselves when space does (issue 15 item 9). The log lives
on a small tmpfs of its own, filled for real."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.config import Config
from tests.conftest import PASSWORD, RunningCloud
from tests.imap.conftest import Raw, fill, make_message


@pytest.fixture
def cloud(config: Config) -> Iterator[Cloud]:
    """The shared cloud, with eu-dublin's transparency log on a 2 MiB tmpfs."""
    log_dir = config.cloud.data_dir / "eu-dublin" / "log"
    log_dir.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(log_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the log: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        cloud = Cloud(config)
        cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
        cloud.add_account("bob@example.test", "us-east", PASSWORD)
        yield cloud
        cloud.close()
    finally:
        subprocess.run(["umount", "-l", str(log_dir)], check=True)


def fill_disk(directory: Path) -> Path:
    """A file that takes every free block of the filesystem."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while out.write(b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_reads_are_unavailable_while_the_log_disk_is_full_then_recover(
    running: RunningCloud,
) -> None:
    dublin = running.cloud.region("eu-dublin")
    fill(dublin, "alice@example.test", [make_message(1)])
    filler = fill_disk(dublin.root / "log")
    raw = Raw(running)
    raw.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    raw.command(b"s", b"SELECT INBOX")
    for _ in range(3):  # it was NO [SERVERBUG], a traceback each time, until a restart
        reply = raw.command(b"f", b"FETCH 1 (BODY.PEEK[])")
        assert reply == [reply[-1]] and reply[-1].startswith(b"f NO [UNAVAILABLE]"), reply
    assert raw.command(b"g", b"FETCH 1 (FLAGS)")[-1] == b"g OK FETCH completed\r\n"
    filler.unlink()
    reply = raw.command(b"h", b"FETCH 1 (BODY.PEEK[])")
    assert reply[-1] == b"h OK FETCH completed\r\n" and b"message 1" in b"".join(reply)
    raw.close()
    again = Raw(running)  # a new session's release is logged too
    again.command(b"l", b'LOGIN alice@example.test "%s"' % PASSWORD.encode())
    again.command(b"s", b"SELECT INBOX")
    assert again.command(b"i", b"FETCH 1 (ENVELOPE)")[-1] == b"i OK FETCH completed\r\n"
    again.close()
