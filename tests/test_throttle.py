"""Login throttling over real connections from several client addresses (all of 127/8 is
loopback): a guesser slows and locks out itself, never the owner, and IMAP and SMTP
submission of a region count guesses together; and whom the connection caps count a
connection against."""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import socket
import ssl
import threading
import time

from borderline.throttle import ConnectionLimiter, LoginThrottle, client_network
from tests.conftest import PASSWORD, RunningCloud

ALICE = "alice@example.test"
OWNER_IP, GUESSER_IP, NEIGHBOUR_IP = "127.0.0.1", "127.0.0.2", "127.0.0.3"
CORES = len(os.sched_getaffinity(0))


def imap_login(running: RunningCloud, source: str, user: str, password: str) -> bytes:
    """The tagged reply to a LOGIN sent from `source`."""
    listen = running.cloud.region("eu-dublin").section.imap
    assert listen is not None
    with socket.create_connection(
        (listen.host, listen.port), timeout=30, source_address=(source, 0)
    ) as sock:
        lines = sock.makefile("rb")
        lines.readline()
        sock.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        while not (line := lines.readline()).startswith(b"a "):
            assert line, "connection closed"
        return line.strip()


def submission_login(running: RunningCloud, source: str, password: str) -> int:
    listen = running.cloud.region("eu-dublin").section.submission
    assert listen is not None
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(listen.host, listen.port, timeout=30, source_address=(source, 0)) as client:
        client.starttls(context=tls)
        client.ehlo()
        # One guess: smtplib's login() would try LOGIN after a refused PLAIN, a second one.
        client.user, client.password = ALICE, password
        try:
            return client.auth("PLAIN", client.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as refused:
            return refused.smtp_code


def fast(throttle: LoginThrottle) -> None:
    throttle.base_delay, throttle.max_delay = 0.001, 0.001


def test_guesses_lock_out_the_guesser_not_the_owner(running: RunningCloud) -> None:
    throttle = running.cloud.region("eu-dublin").logins
    fast(throttle)
    throttle.account_lockout = 15
    assert imap_login(running, OWNER_IP, ALICE, PASSWORD).startswith(b"a OK")
    for attempt in range(throttle.lockout):
        assert b"AUTHENTICATIONFAILED" in imap_login(running, GUESSER_IP, ALICE, f"guess {attempt}")
    assert b"UNAVAILABLE" in imap_login(running, GUESSER_IP, ALICE, PASSWORD)  # even right
    assert imap_login(running, OWNER_IP, ALICE, PASSWORD).startswith(b"a OK")
    # Guesses spread over more addresses lock the account for addresses it never logged in
    # from, still not for the owner's.
    for attempt in range(throttle.account_lockout - throttle.lockout):
        imap_login(running, f"127.0.1.{attempt + 1}", ALICE, "spread guess")
    assert b"UNAVAILABLE" in imap_login(running, NEIGHBOUR_IP, ALICE, PASSWORD)
    assert imap_login(running, OWNER_IP, ALICE, PASSWORD).startswith(b"a OK")


def test_imap_and_submission_count_guesses_together(running: RunningCloud) -> None:
    throttle = running.cloud.region("eu-dublin").logins
    fast(throttle)
    half = throttle.lockout // 2
    for attempt in range(half):
        assert b"AUTHENTICATIONFAILED" in imap_login(running, GUESSER_IP, ALICE, f"g{attempt}")
    for _ in range(throttle.lockout - half):
        assert submission_login(running, GUESSER_IP, "guess") == 535
    assert submission_login(running, GUESSER_IP, PASSWORD) == 454
    assert b"UNAVAILABLE" in imap_login(running, GUESSER_IP, ALICE, PASSWORD)
    assert submission_login(running, OWNER_IP, PASSWORD) == 235


def test_an_address_full_of_failures_spares_the_users_who_logged_in_from_it() -> None:
    throttle = LoginThrottle(address_lockout=20)
    throttle.succeeded("known@example.test", NEIGHBOUR_IP)
    for n in range(20):
        throttle.failed(f"user{n}@example.test", NEIGHBOUR_IP)
    assert throttle.locked("new@example.test", NEIGHBOUR_IP)
    assert not throttle.locked("known@example.test", NEIGHBOUR_IP)
    assert not throttle.locked("new@example.test", OWNER_IP)


def test_delays_grow_with_the_worst_count_and_stay_bounded() -> None:
    throttle = LoginThrottle(free=2, base_delay=1.0, max_delay=4.0)
    delays = [throttle.failed("a@example.test", GUESSER_IP) for _ in range(6)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]
    assert throttle.failed("b@example.test", GUESSER_IP) == 4.0, "the address counts too"
    assert throttle.failed("a@example.test", OWNER_IP) == 4.0, "and so does the account"
    assert throttle.failed("c@example.test", OWNER_IP) == 0.0


def test_one_wrong_password_tried_by_login_and_authenticate_is_one_guess(
    running: RunningCloud,
) -> None:
    """A client falling back from LOGIN to AUTHENTICATE PLAIN with the same wrong password
    on one connection guessed once (throttle.Guesses)."""
    throttle = running.cloud.region("eu-dublin").logins
    fast(throttle)
    throttle.lockout = 3
    listen = running.cloud.region("eu-dublin").section.imap
    assert listen is not None
    plain = base64.b64encode(f"\0{ALICE}\0guess".encode())
    with socket.create_connection(
        (listen.host, listen.port), timeout=30, source_address=(GUESSER_IP, 0)
    ) as sock:
        lines = sock.makefile("rb")
        lines.readline()

        def reply(tag: bytes, command: bytes) -> bytes:
            sock.sendall(tag + b" " + command + b"\r\n")
            while not (line := lines.readline()).startswith(tag + b" "):
                assert line, "connection closed"
                if line.startswith(b"+"):
                    sock.sendall(plain + b"\r\n")
            return line

        for tag in (b"a", b"b"):
            assert b"AUTHENTICATIONFAILED" in reply(tag, f'LOGIN "{ALICE}" "guess"'.encode())
        assert b"AUTHENTICATIONFAILED" in reply(b"c", b"AUTHENTICATE PLAIN")
        assert b"AUTHENTICATIONFAILED" in reply(b"d", f'LOGIN "{ALICE}" "guess 2"'.encode())
        assert b"OK" in reply(b"e", f'LOGIN "{ALICE}" "{PASSWORD}"'.encode()), "locked out"


def test_a_storm_of_logins_checks_at_most_one_password_per_core_at_once() -> None:
    """Each argon2id check holds its memory cost: checks beyond the cores wait their turn
    (throttle.PASSWORD_CHECKS) instead of running, and a check that only asks another
    region runs beside them."""
    throttle = LoginThrottle()
    fast(throttle)
    lock = threading.Lock()
    running, most = [0], [0]

    def check() -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return True

    async def storm() -> list[bool]:
        local = [throttle.attempt(check, f"user{i}", GUESSER_IP) for i in range(6 * CORES)]
        remote = throttle.attempt(lambda: True, "far", GUESSER_IP, local=False)
        return await asyncio.gather(*local, remote)

    assert all(asyncio.run(storm()))
    assert most[0] <= CORES


def test_a_client_is_its_ipv4_address_or_its_ipv6_64() -> None:
    assert client_network("192.0.2.7") == "192.0.2.7"
    assert client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_network("2001:db8::1") == client_network("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_network("2001:db8:0:1::1") != client_network("2001:db8::1")
    limiter = ConnectionLimiter(total=3, per_client=2)
    slots = [limiter.acquire(host) for host in ("2001:db8::1", "2001:db8::2", "2001:db8::3")]
    assert slots[2] is None, "one /64 is one client"
    assert limiter.acquire("192.0.2.7") is not None
    assert limiter.acquire("192.0.2.8") is None, "the total is 3"
    limiter.release(str(slots[0]))
    assert limiter.acquire("192.0.2.8") is not None
