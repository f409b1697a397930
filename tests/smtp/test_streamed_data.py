"""Outgoing DATA a window at a time: dot-stuffed exactly as aiosmtplib would, received
intact by a real SMTP server across many windows, and a peer that stops reading costs a
timeout, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as ServerSMTP
from aiosmtpd.smtp import Envelope, Session
from aiosmtplib.protocol import LINE_ENDINGS_REGEX, PERIOD_REGEX
from hypothesis import given
from hypothesis import strategies as st

from borderline.smtp.streamed_data import WINDOW, send_data, stuffed_pieces
from tests.net import free_port

# Data made of the bytes that matter to line endings and stuffing.
DATA = st.text(alphabet=".a\r\n", max_size=60).map(str.encode)


@given(data=DATA, window=st.integers(min_value=1, max_value=9))
def test_pieces_match_aiosmtplib_at_every_window(data: bytes, window: int) -> None:
    expected = PERIOD_REGEX.sub(b"..", LINE_ENDINGS_REGEX.sub(b"\r\n", data))
    assert b"".join(stuffed_pieces(data, window)) == expected


def test_a_window_that_ends_between_cr_and_lf_stuffs_the_next_line() -> None:
    assert b"".join(stuffed_pieces(b"a\r\n.b\r\n", 2)) == b"a\r\n..b\r\n"
    assert b"".join(stuffed_pieces(b".\r\n", 1)) == b"..\r\n"


class _Keep:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.received.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def peer() -> Iterator[tuple[_Keep, int]]:
    handler = _Keep()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=None)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def _transaction(port: int, data: bytes, timeout: float = 30) -> aiosmtplib.SMTPResponse:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=timeout)
    await client.connect()
    try:
        await client.mail("a@example.org")
        await client.rcpt("b@example.org")
        return await send_data(client, data, timeout)
    finally:
        client.close()


def test_many_windows_arrive_as_sent(peer: tuple[_Keep, int]) -> None:
    handler, port = peer
    line = b".a line that starts with a dot\r\nand one that does not\r\n"
    data = line * (3 * WINDOW // len(line) + 7)
    reply = asyncio.run(_transaction(port, data))
    assert reply.code == 250
    assert handler.received == [data]


def test_data_without_a_final_line_break_is_ended_on_a_line_of_its_own(
    peer: tuple[_Keep, int],
) -> None:
    handler, port = peer
    asyncio.run(_transaction(port, b"bare\nline feeds\nand no line break at the end"))
    asyncio.run(_transaction(port, b"a bare carriage return at the end\r"))
    assert handler.received == [
        b"bare\r\nline feeds\r\nand no line break at the end\r\n",
        b"a bare carriage return at the end\r\n",
    ]


async def _deaf_server() -> tuple[asyncio.Server, int]:
    """Answers every command up to DATA's 354, then never reads again."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 deaf\r\n")
        while (line := await reader.readline()).upper() != b"DATA\r\n":
            writer.write(b"250 ok\r\n" if line else b"")
            if not line:
                return
        writer.write(b"354 go on\r\n")
        await asyncio.sleep(3600)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_peer_that_stops_reading_times_out() -> None:
    async def run() -> None:
        server, port = await _deaf_server()
        async with server:
            with pytest.raises(aiosmtplib.SMTPTimeoutError):
                await _transaction(port, (b"x" * 998 + b"\r\n") * (64 * 1024), 1.0)

    asyncio.run(run())
