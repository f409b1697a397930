"""The fixtures themselves: Postfix injects mail into a server under test over STARTTLS and
logs the outcome; the CI rule for a missing component."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.internet.components import component_missing, free_port
from tests.internet.postfix import PostfixServer
from tests.internet.testca import TestCA


class Collect:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        tls = session.ssl is not None
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content, tls))
        return "250 2.0.0 stored"


def test_postfix_delivers_into_a_server_under_test(postfix: PostfixServer, test_ca: TestCA) -> None:
    collect = Collect()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*test_ca.issue("mx.borderline.test"))
    port = free_port()
    server = Controller(collect, hostname="127.0.0.1", port=port, tls_context=context)
    server.start()
    try:
        postfix.route("borderline.test", "127.0.0.1", port)
        message = EmailMessage()
        message["From"] = "carol@remote.test"
        message["To"] = "alice@borderline.test"
        message["Subject"] = "from the Internet"
        message.set_content("hello\n")
        queue_id = postfix.send(message, "carol@remote.test", ["alice@borderline.test"])
        outcome = postfix.wait_outcome(queue_id)
    finally:
        server.stop()
    assert (outcome.status, outcome.dsn, outcome.recipient) == (
        "sent",
        "2.0.0",
        "alice@borderline.test",
    )
    assert outcome.relay == f"127.0.0.1[127.0.0.1]:{port}" and "stored" in outcome.detail
    [(sender, recipients, content, tls)] = collect.received
    assert (sender, recipients, tls) == ("carol@remote.test", ["alice@borderline.test"], True)
    assert b"Subject: from the Internet" in content
    assert any("TLS connection established to" in line for line in postfix.log_lines())


def test_postfix_logs_a_deferral(postfix: PostfixServer) -> None:
    postfix.route("down.test", "127.0.0.1", free_port())  # nothing listens there
    queue_id = postfix.send(b"Subject: x\r\n\r\ny\r\n", "carol@remote.test", ["a@down.test"])
    outcome = postfix.wait_outcome(queue_id)
    assert (outcome.status, outcome.dsn) == ("deferred", "4.4.1")


def test_a_missing_component_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing in CI: no knotd"):
        component_missing("no knotd")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no knotd"):
        component_missing("no knotd")
