"""Pytest fixtures for Internet mail, for any test package: `from tests.internet.fixtures
import ...` in its conftest.py. Servers start once per test module; per-test state (DNS
records, routes, served policies) is set by each test."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.internet.dns_server import KnotServer
from tests.internet.https_policy import PolicyServer
from tests.internet.postfix import PostfixServer
from tests.internet.rspamd import RspamdServer
from tests.internet.testca import TestCA


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """The CA whose certificates clients in the tests trust."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA nobody trusts: its certificates must be refused."""
    return TestCA(tmp_path_factory.mktemp("rogue-ca"), name="Rogue CA")


@pytest.fixture(scope="module")
def dns_server() -> Iterator[KnotServer]:
    server = KnotServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns(dns_server: KnotServer) -> KnotServer:
    """The module's DNS server with an empty `test.` zone; the test publishes its records."""
    dns_server.publish([])
    return dns_server


@pytest.fixture(scope="module")
def postfix(test_ca: TestCA) -> Iterator[PostfixServer]:
    """A Postfix for `remote.test` (Maildir) whose STARTTLS certificate the test CA issued
    for mx.remote.test."""
    server = PostfixServer(certificate=test_ca.issue("mx.remote.test", stem="postfix"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rspamd() -> Iterator[RspamdServer]:
    server = RspamdServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def policy_server() -> Iterator[PolicyServer]:
    server = PolicyServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def silent_dns() -> Iterator[int]:
    """A UDP port where nothing ever answers: every DNS query to it times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        yield int(sink.getsockname()[1])
