"""Delivery notices (borderline.notices) over a real socket pair: what a worker sends is
what the main process reads, anything else is dropped, and a full socket never blocks the
worker."""

from __future__ import annotations

import asyncio
import os

import pytest

from borderline.notices import MAX_MAILBOXES, NoticeReceiver, NoticeSender, decode, encode


def test_a_long_list_is_sent_in_several_notices_that_decode_to_it() -> None:
    ids = set(range(1, 2 * MAX_MAILBOXES + 2))
    datagrams = encode("eu-dublin", ids)
    assert len(datagrams) == 3
    heard: set[int] = set()
    for datagram in datagrams:
        notice = decode(datagram)
        assert notice is not None and notice[0] == "eu-dublin"
        heard |= notice[1]
    assert heard == ids


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"eu-dublin",
        b"eu-dublin 1 x",
        b"eu-dublin -1",
        b"\xff 1",
        b"r " + b"1 " * 600,
        b"r " + b"1" * 5000,  # past Python's int digit limit, and no 64-bit id
    ],
)
def test_malformed_notices_decode_to_nothing(datagram: bytes) -> None:
    assert decode(datagram) is None


def test_the_main_process_hears_each_notice_and_a_full_socket_drops_them() -> None:
    receiver = NoticeReceiver()
    worker = NoticeSender(os.dup(receiver.worker_fd))
    heard: list[tuple[str, set[int]]] = []

    async def hear() -> None:
        receiver.start(lambda region, ids: heard.append((region, ids)))
        worker.delivered("eu-dublin", {3, 4})
        os.write(receiver.worker_fd, b"not a notice")
        worker.delivered("us-east", {7})
        for _ in range(100):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.01)
        receiver.stop()

    try:
        asyncio.run(hear())
        assert heard == [("eu-dublin", {3, 4}), ("us-east", {7})]
        for _ in range(100_000):  # nobody reads now: the socket fills, and sending returns
            worker.delivered("eu-dublin", {1})
    finally:
        worker.close()
        receiver.close()
