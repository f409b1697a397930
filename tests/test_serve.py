"""`borderline serve` as an operator meets it: a busy port, a second server on the same data,
a config with two listeners on one port, SIGHUP reloads and a clean stop."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from borderline.config import Listen, load_config
from borderline.store import open_store
from borderline.tls import ensure_certificate
from tests.conftest import PASSWORD, write_config
from tests.smtp.test_ingress import _client_tls
from tests.test_cli import run


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def read_until(server: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    assert server.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        assert line, (
            f"server ended before {text!r}: {lines} {server.stderr and server.stderr.read()}"
        )
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {timeout} s: {lines}")


def certificate_seen(host: str, port: int) -> bytes:
    """The DER certificate an IMAPS listener presents."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=30) as sock,
        context.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_a_busy_port_fails_before_anything_is_announced(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    imap = load_config(config).region("eu-dublin").imap
    assert imap is not None
    with socket.create_server((imap.host, imap.port)):
        done = run("serve", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 1
    assert "serving" not in done.stdout and "eu-dublin" not in done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "eu-dublin IMAP" in line and "address already in use" in line.lower()


def test_two_listeners_on_one_port_are_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text()
    imap = load_config(config).region("us-east").imap
    config.write_text(text.replace('imaps = "127.0.0.1:', f'imaps = "0.0.0.0:{imap.port}" #', 1))
    done = run("account", "list", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 1
    assert "regions.us-east.imaps and regions.us-east.imap both listen on port" in done.stderr


def test_one_server_per_data_reload_on_sighup_and_a_clean_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    server = start(config)
    try:
        announced = read_until(server, "serving")
        assert any("eu-dublin" in line and "imaps" in line for line in announced)

        second = run("serve", "-c", str(config), cwd=tmp_path)
        assert second.returncode == 1
        assert f"already served from {tmp_path / 'data'}" in second.stderr
        assert f"(pid {server.pid})" in second.stderr

        imaps = load_config(config).region("eu-dublin").imaps
        assert imaps is not None
        before = certificate_seen(imaps.host, imaps.port)
        tls_dir = tmp_path / "data" / "eu-dublin" / "tls"
        fresh = tmp_path / "fresh"
        ensure_certificate(fresh, "mail.example.test")
        for name in ("cert.pem", "key.pem"):
            shutil.copy(fresh / name, tls_dir / name)
        server.send_signal(signal.SIGHUP)
        assert "reloaded: TLS certificates" in read_until(server, "reload")[-1]
        after = certificate_seen(imaps.host, imaps.port)
        assert after != before and after == ssl.PEM_cert_to_DER_cert(
            (fresh / "cert.pem").read_text()
        )

        config.write_text(
            config.read_text().replace("max_message_size = 26214400", "max_message_size = 1000")
        )
        server.send_signal(signal.SIGHUP)
        refused = read_until(server, "reload")[-1]
        assert "reload refused: [cloud] changed; restart to apply" in refused
        assert certificate_seen(imaps.host, imaps.port) == after  # still serving

        server.send_signal(signal.SIGTERM)
        assert read_until(server, "stopped")
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait()


def _rcpt(listen: Listen, address: str) -> int:
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("x@example.org")
        return client.rcpt(address)[0]


def _submission_login(listen: Listen, password: str) -> int:
    with smtplib.SMTP(listen.host, listen.port, timeout=30) as client:
        client.starttls(context=_client_tls())
        try:
            return client.login("alice@example.test", password)[0]
        except smtplib.SMTPAuthenticationError as refused:
            return refused.smtp_code


def _eventually(probe: Callable[[], int], wanted: int, timeout: float = 20) -> int:
    """Probe until it answers `wanted` (the server checks for changes about once a second)
    or `timeout` passes; the last answer."""
    deadline = time.monotonic() + timeout
    while (answer := probe()) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def test_running_servers_see_what_the_cli_changes_without_sighup(tmp_path: Path) -> None:
    """`account delete`, `account passwd` and `alias add|remove` run in a process of their
    own against the same data while each region is served by a process of its own: the
    deletion is handed to the server that owns the home region's log, and the other server
    notices the directory change within about a second."""
    config = write_config(tmp_path)

    def cli(*args: str) -> None:
        done = run(*args, "-c", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    cli("account", "add", "alice@example.test", "-r", "eu-dublin", "--password", PASSWORD)
    loaded = load_config(config)
    dublin, us = loaded.region("eu-dublin"), loaded.region("us-east")
    assert dublin.submission is not None
    servers = [start(config, "--region", region) for region in ("eu-dublin", "us-east")]
    try:
        for server in servers:
            read_until(server, "serving")
        for mx in (dublin.smtp, us.smtp):
            assert _rcpt(mx, "alice@example.test") == 250  # its home is cached now
        assert _submission_login(dublin.submission, PASSWORD) == 235

        cli("account", "add", "carol@example.test", "-r", "us-east", "--password", PASSWORD)
        assert _rcpt(dublin.smtp, "carol@example.test") == 250
        cli("alias", "add", "sales@example.test", "alice@example.test")
        assert _eventually(lambda: _rcpt(us.smtp, "sales@example.test"), 250) == 250
        cli("alias", "remove", "sales@example.test")
        assert _eventually(lambda: _rcpt(us.smtp, "sales@example.test"), 550) == 550

        new = "another horse battery"
        cli("account", "passwd", "alice@example.test", "--password", new)
        assert _submission_login(dublin.submission, new) == 235
        assert _submission_login(dublin.submission, PASSWORD) == 535

        # The server's refusal comes back, with nothing deleted.
        store = open_store(tmp_path / "data" / "eu-dublin" / "mail.sqlite")
        hold = store.add_hold("alice@example.test", "REQ-1", 4_000_000_000.0)
        held = run(
            "account", "delete", "alice@example.test", "--yes", "-c", str(config), cwd=tmp_path
        )
        assert held.returncode == 1 and "preservation hold" in held.stderr
        assert _rcpt(us.smtp, "alice@example.test") == 250
        store.release_hold(hold)
        store.close()
        cli("account", "delete", "alice@example.test", "--yes")  # done by the Dublin server
        assert _rcpt(dublin.smtp, "alice@example.test") == 550
        assert _submission_login(dublin.submission, new) == 535
        assert _eventually(lambda: _rcpt(us.smtp, "alice@example.test"), 550) == 550
        again = run(
            "account", "delete", "alice@example.test", "--yes", "-c", str(config), cwd=tmp_path
        )
        assert again.returncode == 1 and "no account alice@example.test" in again.stderr
        assert [server.poll() for server in servers] == [None, None]
    finally:
        for server in servers:
            server.kill()
            server.wait()
