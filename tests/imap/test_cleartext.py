"""Passwords only over TLS by default, whatever the peer's address (issue 15 item 15)."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.imap.conftest import Raw, client_tls, connect


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The shared cloud, without the tests' `allow_cleartext_login = true`."""
    return write_config(tmp_path, **{"allow_cleartext_login = true": ""})


def test_loopback_is_not_exempt_from_tls(running: RunningCloud) -> None:
    assert not running.cloud.config.cloud.allow_cleartext_login
    raw = Raw(running)
    assert b"LOGINDISABLED" in raw.greeting and b"AUTH=PLAIN" not in raw.greeting
    assert raw.command(b"a", b'LOGIN alice@example.test "%s"' % PASSWORD.encode()) == [
        b"a NO [PRIVACYREQUIRED] use STARTTLS or the implicit TLS port first\r\n"
    ]
    assert raw.command(b"b", b"AUTHENTICATE PLAIN AGFsaWNlAHg=")[-1].startswith(
        b"b NO [PRIVACYREQUIRED]"
    )
    raw.close()
    client = connect(running)
    client.starttls(client_tls())
    assert "AUTH=PLAIN" in client.capabilities
    client.login("alice@example.test", PASSWORD)
    client.logout()
    listen = running.cloud.region("eu-dublin").section.imaps
    assert listen is not None
    secure = imaplib.IMAP4_SSL(listen.host, listen.port, ssl_context=client_tls(), timeout=30)
    secure.login("alice@example.test", PASSWORD)
    secure.logout()
