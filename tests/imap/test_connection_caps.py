"""The `[imap]` connection caps over real sockets: in all for a region's two listeners, and
per client (an IPv4 address here; IPv6 /64s are counted by throttle.client_network)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from borderline.cloud import Cloud
from borderline.config import Listen, load_config
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.imap.conftest import client_tls

REFUSED = b"* BYE [UNAVAILABLE] Too many connections\r\n"


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[RunningCloud]:
    """A cloud whose regions take 3 IMAP connections, 2 of them from one client."""
    caps = "[imap]\nmax_connections = 3\nmax_connections_per_ip = 2\n\n[api]"
    cloud = Cloud(load_config(write_config(tmp_path, **{"[api]": caps})))
    cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    running = RunningCloud(cloud)
    yield running
    running.stop()
    cloud.close()


class Client:
    """A connection from a loopback address of its own, and the server's greeting."""

    def __init__(self, listen: Listen | None, source: str, tls: bool = False) -> None:
        assert listen is not None
        sock = socket.create_connection(
            (listen.host, listen.port), timeout=30, source_address=(source, 0)
        )
        self.sock = client_tls().wrap_socket(sock) if tls else sock
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def rest(self) -> bytes:
        """What the server sends until it closes the connection."""
        return self.file.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def imap(running: RunningCloud) -> Listen | None:
    return running.cloud.region("eu-dublin").section.imap


def test_one_client_gets_at_most_its_share(capped: RunningCloud) -> None:
    held = [Client(imap(capped), "127.0.0.1") for _ in range(2)]
    assert all(c.greeting.startswith(b"* OK [CAPABILITY") for c in held)
    over = Client(imap(capped), "127.0.0.1")
    assert over.greeting == REFUSED
    assert over.rest() == b"", "closed"
    other = Client(imap(capped), "127.0.0.2")
    assert other.greeting.startswith(b"* OK"), "another client has a share of its own"
    for client in (*held, over, other):
        client.close()


def test_a_region_takes_at_most_its_total_over_both_listeners(capped: RunningCloud) -> None:
    imaps = capped.cloud.region("eu-dublin").section.imaps
    held = [
        Client(imap(capped), "127.0.0.1"),
        Client(imap(capped), "127.0.0.2"),
        Client(imaps, "127.0.0.3", tls=True),
    ]
    assert all(c.greeting.startswith(b"* OK") for c in held)
    over = [Client(imap(capped), "127.0.0.4"), Client(imaps, "127.0.0.4", tls=True)]
    for client in over:
        assert client.greeting == REFUSED
        assert client.rest() == b"", "closed"
    us_east = Client(capped.cloud.region("us-east").section.imap, "127.0.0.4")
    assert us_east.greeting.startswith(b"* OK"), "each region counts its own"
    for client in (*held, *over, us_east):
        client.close()


def test_a_closed_connection_frees_its_slot(capped: RunningCloud) -> None:
    held = [Client(imap(capped), "127.0.0.1") for _ in range(2)]
    refused = Client(imap(capped), "127.0.0.1")
    assert refused.greeting == REFUSED
    leaving = held.pop()
    leaving.sock.sendall(b"a LOGOUT\r\n")
    assert leaving.rest().endswith(b"a OK LOGOUT completed\r\n"), "closed"
    leaving.close()
    again = Client(imap(capped), "127.0.0.1")
    assert again.greeting.startswith(b"* OK"), "a closed session frees its slot"
    for client in (*held, refused, again):
        client.close()
