"""How a session writes (session.write_through): straight from the responses with writev as
far as the socket takes them at once, the rest returned, unchanged and in order, for the
transport to buffer; nothing written when the transport already holds output."""

from __future__ import annotations

import asyncio
import os
import socket

from borderline.imap.session import write_through


class Sink(asyncio.Protocol):
    pass


async def _connected() -> tuple[asyncio.Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    transport, _ = await asyncio.get_running_loop().create_connection(Sink, sock=ours)
    return transport, theirs


def _drain(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    received = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return bytes(received)
        received += chunk


def test_what_the_socket_does_not_take_comes_back_in_order() -> None:
    async def run() -> tuple[bytes, list[bytes], bytes]:
        transport, peer = await _connected()
        chunks = [bytes([65 + i % 26]) * (100 + 37 * i) for i in range(1500)]
        rest = write_through(transport, chunks)
        sent = _drain(peer)
        transport.close()
        peer.close()
        return sent, rest, b"".join(chunks)

    sent, rest, whole = asyncio.run(run())
    assert 0 < len(sent) < len(whole), "the socket took some, not all"
    assert sent + b"".join(rest) == whole


def test_a_full_socket_or_a_busy_transport_gets_the_chunks_untouched() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        transport, peer = await _connected()
        sock = transport.get_extra_info("socket")
        filler = b"f" * 65536
        try:
            while True:
                os.write(sock.fileno(), filler)
        except BlockingIOError:
            pass
        chunks = [b"one", b"two"]
        full = write_through(transport, chunks)
        transport.write(b"queued")  # the socket is full: the transport keeps it
        busy = write_through(transport, chunks)
        transport.abort()
        peer.close()
        return full, busy

    full, busy = asyncio.run(run())
    assert full == [b"one", b"two"]
    assert busy == [b"one", b"two"]
