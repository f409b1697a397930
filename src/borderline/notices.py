"""Delivery notices between the processes of one `serve`: an ingest worker that committed
mail tells the main process which mailboxes it delivered to, so the IMAP sessions IDLE on
them wake at once instead of at the store watcher's next look (imap/server.py).

One datagram socket pair, made by the main process before it starts the workers, which
inherit one end: no path on disk, nothing another user can reach. A notice that cannot be
sent at once is dropped, never waited for: the watcher finds that change within a second.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

MAX_NOTICE = 8192  # bytes in one datagram
MAX_MAILBOXES = 500  # mailbox ids in one notice: a longer list is sent in several
MAX_ID_DIGITS = 19  # a mailbox id is a 64-bit integer
READS_PER_TURN = 100  # notices read before the event loop serves anything else

Handler = Callable[[str, set[int]], None]


def encode(region_id: str, mailbox_ids: Iterable[int]) -> list[bytes]:
    """`<region> <id> <id>...` in ASCII, as many datagrams as the ids need."""
    ids = sorted(mailbox_ids)
    return [
        " ".join([region_id, *map(str, ids[at : at + MAX_MAILBOXES])]).encode()
        for at in range(0, len(ids), MAX_MAILBOXES)
    ]


def decode(datagram: bytes) -> tuple[str, set[int]] | None:
    """The region and mailbox ids of a notice, or None for anything else."""
    words = datagram.split()
    if not 2 <= len(words) <= MAX_MAILBOXES + 1:
        return None
    if not all(w.isdigit() and len(w) <= MAX_ID_DIGITS for w in words[1:]):
        return None
    try:
        region_id = words[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    return region_id, {int(w) for w in words[1:]}


class NoticeSender:
    """An ingest worker's end, from the file descriptor it inherited."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._socket.setblocking(False)

    def delivered(self, region_id: str, mailbox_ids: set[int]) -> None:
        for datagram in encode(region_id, mailbox_ids):
            try:
                self._socket.send(datagram)
            except OSError as exc:  # full, or the main process is gone: the watcher sees it
                log.debug("delivery notice dropped: %s", exc)
                return

    def close(self) -> None:
        self._socket.close()


class NoticeReceiver:
    """The main process's end; `worker_fd` is the end its ingest workers inherit."""

    def __init__(self) -> None:
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ours.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def worker_fd(self) -> int:
        return self._theirs.fileno()

    def start(self, handler: Handler) -> None:
        """Call `handler(region, mailbox_ids)` on this event loop for each notice."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._ours.fileno(), self._read, handler)

    def _read(self, handler: Handler) -> None:
        for _ in range(READS_PER_TURN):
            try:
                datagram = self._ours.recv(MAX_NOTICE)
            except BlockingIOError:
                return
            notice = decode(datagram)
            if notice is None:
                log.warning("ignored a malformed delivery notice (%d bytes)", len(datagram))
                continue
            handler(*notice)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._ours.fileno())
            self._loop = None

    def close(self) -> None:
        self.stop()
        self._ours.close()
        self._theirs.close()
