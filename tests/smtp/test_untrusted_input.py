"""Untrusted input never crashes a server: random SMTP lines and forged relay envelopes."""

from __future__ import annotations

import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borderline.delivery import DECODE_STEP, Envelope, RelayRejected
from tests.conftest import RunningCloud

VERBS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "VRFY", "AUTH", "BDAT"]


def _session(port: int, lines: list[bytes]) -> bytes:
    """Send the lines, end any DATA or AUTH exchange with '.', QUIT, read to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        script = [*lines, b".", b"QUIT"]
        conn.sendall(b"".join(line + b"\r\n" for line in script))
        conn.shutdown(socket.SHUT_WR)  # a BDAT chunk that runs past the script ends here
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
        return received


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")),
            st.tuples(st.sampled_from(VERBS), st.binary(max_size=80)).map(
                lambda t: t[0].encode() + t[1].replace(b"\n", b"")
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_random_command_lines_get_replies_and_server_survives(
    running: RunningCloud, lines: list[bytes]
) -> None:
    port = running.cloud.region("eu-dublin").section.smtp.port
    reply = _session(port, lines)
    assert reply.startswith(b"220 ")
    last = reply.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
    # An orderly end: our QUIT answered, aiosmtpd's own limit on unknown commands, or a
    # BDAT whose size does not parse (nothing after it can be read as a command); a BDAT
    # chunk may also take the QUIT as its data.
    orderly = (
        b"221 2.0.0 Bye",
        b"502 5.5.1 Too many unrecognized commands, goodbye.",
        b"501 5.5.4 Syntax: BDAT chunk-size [LAST]",
    )
    if not any(re.match(rb"(?i)BDAT +[0-9]", line) for line in lines):
        assert last in orderly, last
    # The server is still healthy for the next, well-formed client.
    assert b"\r\n250 2.0.0 OK\r\n" in _session(port, [b"NOOP"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2000))
def test_garbage_relay_envelopes_are_rejected_cleanly(running: RunningCloud, data: bytes) -> None:
    planner = running.cloud.region("eu-dublin").planner
    forged = b"X-Borderline-Relay: v1; from=us-east; to=eu-dublin\r\n" + data
    with pytest.raises(RelayRejected):
        planner.open_relay_message(forged)


def _large_genuine_envelope(running: RunningCloud) -> bytes:
    """A genuine relay envelope from us-east to eu-dublin, several decode steps long."""
    us = running.cloud.region("us-east")
    body = b"Subject: big\r\n\r\n" + b"x" * (3 * DECODE_STEP)
    sealed = us.planner.plan(Envelope("x@example.org", ("alice@example.test",), body, 0.0))
    relay = sealed.relays[0].sealed
    signed = us.planner.signed_relay("eu-dublin", lambda room: bytearray(room) + relay)
    assert signed is not None
    return b"".join(us.planner.relay_pieces("eu-dublin", *signed))


def test_large_relay_envelopes_tampered_past_the_first_decode_step_are_rejected(
    running: RunningCloud,
) -> None:
    """The home region decodes an envelope's base64 a step at a time over its own buffer:
    damage in a later step, octets added or a quantum cut, a truncated or a lengthened
    envelope must fail the check, as bytes or as SMTP's bytearray, never raise anything
    else. (What base64 skips, line breaks or other octets, leaves the signed bytes as they
    were: that envelope is the genuine one.)"""
    planner = running.cloud.region("eu-dublin").planner
    genuine = _large_genuine_envelope(running)
    assert planner.open_relay_message(bytearray(genuine)).content.endswith(b"x" * 100)
    late = len(genuine) - DECODE_STEP // 2  # in the last decode step
    hostile = [
        genuine[:late] + (b"B" if genuine[late : late + 1] == b"A" else b"A") + genuine[late + 1 :],
        genuine[:late] + b"QUJD" + genuine[late:],  # three more octets
        genuine[:late] + b"Q" + genuine[late:],  # a quantum cut in two
        genuine[:late],
        genuine + b"QUJD\r\n" * 1000,
    ]
    for data in hostile:
        for form in (bytes(data), bytearray(data)):
            with pytest.raises(RelayRejected):
                planner.open_relay_message(form)
