"""aiosmtpd's SMTP protocol with a faster, stricter DATA phase, connection caps and timeouts.

aiosmtpd reads DATA one line at a time through a StreamReader capped at 1,001 bytes, which
pauses the socket every 2 KB: about 300 awaits and 10 pauses per 20 KB message, most of the
server's CPU at 1,000 msg/s (measured with cProfile, see bench/RESULTS.md). This override
reads up to each '<LF>.<CR><LF>' with a 256 KiB window and keeps aiosmtpd's replies and
limits: 552 when the size limit is passed, 500 for an over-long line.

Data ends only at <CR><LF>.<CR><LF> (RFC 5321 4.1.1.4). A bare <LF> or bare <CR> anywhere in
the data is refused as Postfix does with `smtpd_forbid_bare_newline = reject`: the data is
read to its real end, the reply is `550 5.5.2 <host> Error: bare <LF> received`, and the
session goes on. So an '<LF>.<CR><LF>' that another server takes for the end never ends a
message here, and commands smuggled after it are read as refused data, never run.

The data is unstuffed and checked as it arrives, a window at a time, into a buffer that
becomes the message without a copy: memory per message is its size plus a window.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from borderline.delivery import is_relay_message
from borderline.smtp.limits import ConnectionLimiter
from borderline.smtp.transaction import Transaction, TransactionLog

log = logging.getLogger(__name__)

DATA_WINDOW = 256 * 1024
# A line feed, then the lone-dot line: the end of data when a carriage return precedes it.
SEPARATOR = b"\n.\r\n"
# The line break that ends the DATA command stands before the first line of data.
DATA_START = b"\r\n"
# Enough of the data to tell what kind of message it is (see `size_limit_for`).
HEAD = 64
REPLY_MAX = 510


@dataclass
class _Data:
    """One DATA transfer, fed in pieces of wire bytes that hold no end of data."""

    size_limit: int
    line_limit: int
    size_limit_for: Callable[[bytes], int] | None = None
    content: io.BytesIO = field(default_factory=io.BytesIO)
    size: int = 0
    too_big: bool = False
    line_too_long: bool = False
    bare: str | None = None  # "<LF>" or "<CR>": the first bare line ending seen
    line: int = 0  # length of the unfinished line at the end of what was fed
    tail: bytes = DATA_START  # the last two wire bytes fed

    def feed(self, wire: bytes | bytearray) -> None:
        if not wire:
            return
        if self.bare is None:
            self.bare = _bare_line_ending(self.tail[-1:], wire)
        if not self.line_too_long:
            self._check_lines(wire)
        if not self.too_big:
            # RFC 5321 4.5.2: drop the transparency dot of every line that starts with one;
            # the two bytes fed before may hold the line break such a dot follows.
            unstuffed = (self.tail + wire).replace(b"\r\n.", b"\r\n")
            if self.size == 0 and self.size_limit_for is not None:
                self.size_limit = self.size_limit_for(unstuffed[2 : 2 + HEAD])
            self.size += len(unstuffed) - len(self.tail)
            if self.size_limit and self.size > self.size_limit:
                self.too_big = True
                self.content = io.BytesIO()
            else:
                self.content.write(memoryview(unstuffed)[len(self.tail) :])
        self.tail = (self.tail + wire[-2:])[-2:]

    def _check_lines(self, wire: bytes | bytearray) -> None:
        """RFC 5321 4.5.3.1.6: a line holds at most 1,000 octets with its <CR><LF>, plus a
        transparency dot (aiosmtpd's `line_length_limit`, counted as aiosmtpd does). Looks
        for the last line feed in each stretch of `line_limit` bytes: one search per
        stretch, not one per line."""
        limit = self.line_limit
        first = wire.find(b"\n")
        if first < 0:
            self.line += len(wire)
        elif self.line + first >= limit:
            self.line_too_long = True
        else:
            start = first + 1  # where a line starts
            while start + limit <= len(wire):
                last = wire.rfind(b"\n", start, start + limit)
                if last < 0:  # no line break in a whole stretch
                    self.line_too_long = True
                    return
                start = last + 1
            last = wire.rfind(b"\n", start)
            self.line = len(wire) - (start if last < 0 else last + 1)
        self.line_too_long = self.line_too_long or self.line >= limit


def _bare_line_ending(before: bytes, wire: bytes | bytearray) -> str | None:
    """'<LF>' if `wire`, after the byte `before`, holds a line feed with no carriage return
    before it; '<CR>' for a carriage return with no line feed after it. A carriage return
    that ends `wire` is judged with the next piece."""
    completes = 0  # a line feed first completes the carriage return that ended `before`
    if before == b"\r":
        if not wire.startswith(b"\n"):
            return "<CR>"
        completes = 1
    pairs = wire.count(b"\r\n")
    if wire.count(b"\n") - completes > pairs:
        return "<LF>"
    if wire.count(b"\r") - wire.endswith(b"\r") > pairs:
        return "<CR>"
    return None


class FastDataSMTP(SMTP):
    """aiosmtpd's SMTP with the DATA reader above; 421 for a connection over the caps of
    `limiter`; RFC 5321 4.5.3.2 timeouts: `timeout` for each command (and the first) and
    `data_timeout` for each block of data. `size_limit_for` gives the size limit for data
    that starts with the given bytes (default: `data_size_limit`, which EHLO advertises).
    Each transaction is reported to `transactions` when it ends."""

    def __init__(
        self,
        handler: object,
        *,
        transactions: TransactionLog,
        limiter: ConnectionLimiter | None = None,
        data_timeout: float = 180,
        size_limit_for: Callable[[bytes], int] | None = None,
        **kwargs: object,
    ) -> None:
        self.transactions = transactions
        self._last_reply = ""
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]
        self.limiter = limiter
        self.data_timeout = data_timeout
        self.size_limit_for = size_limit_for
        self._slot: str | None = None
        self._refused = False
        self._in_data = False
        self._last_received = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # STARTTLS calls this again for the TLS transport: that is the same connection.
        if self.limiter is not None and self._original_transport is None:
            peer = transport.get_extra_info("peername")
            self._slot = self.limiter.acquire(peer[0] if isinstance(peer, tuple) else str(peer))
            if self._slot is None:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(
                    f"421 4.7.0 {self.hostname} Error: too many connections,"
                    " try again later\r\n".encode()
                )
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.transactions.dropped(self.envelope, self.session)
        if self._slot is not None and self.limiter is not None:
            self.limiter.release(self._slot)
            self._slot = None
        super().connection_lost(error)

    def push(self, status: str | bytes) -> Coroutine[Any, Any, None]:
        """Every reply line is printable ASCII of at most 512 octets with its CRLF (RFC 5321
        4.2.1, 4.5.3.1.5), whatever client text aiosmtpd echoes into it."""
        if isinstance(status, bytes):
            status = status.decode("ascii", "replace")
        if not (status.isascii() and status.isprintable() and len(status) <= REPLY_MAX):
            status = "".join(c if " " <= c <= "~" else "?" for c in status[:REPLY_MAX])
        self._last_reply = status
        return super().push(status)

    def _create_envelope(self) -> Envelope:
        """Each new envelope (RSET, HELO/EHLO, STARTTLS, after data) drops the last one."""
        self.transactions.dropped(self.envelope, self.session)
        return Transaction()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(arg)
        self.transactions.mail(self.envelope, self.session, self._last_reply)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(arg)
        self.transactions.rcpt(self.envelope, self._last_reply)

    def data_received(self, data: bytes) -> None:
        self._last_received = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        """In DATA each block that arrives restarts the data timeout (checked here, not
        rearmed per block: that costs a timer per read). RFC 5321 4.5.3.2.7: say why before
        hanging up."""
        if self._in_data:
            idle = self.loop.time() - self._last_received
            if idle < self.data_timeout:
                self._reset_timeout(self.data_timeout - idle)
                return
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._in_data = True
        self._last_received = self.loop.time()
        self._reset_timeout(self.data_timeout)
        try:
            data = await self._read_data()
        finally:
            self._in_data = False
        self._reset_timeout()
        if data is None:
            return
        size, relay = data.size, False
        if data.bare is not None:
            log.debug("%r: bare %s in DATA", self.session and self.session.peer, data.bare)
            reply = f"550 5.5.2 {self.hostname} Error: bare {data.bare} received"
        elif data.too_big:
            reply = "552 Error: Too much mail data"
        elif data.line_too_long:
            reply = "500 Line too long (see RFC5321 4.5.3.1.6)"
        else:
            content = data.content.getvalue()  # the buffer itself, not a copy
            relay = is_relay_message(content[:HEAD])
            del data
            self.envelope.content = self.envelope.original_content = content
            del content  # the handler may drop the message once it is encrypted
            status = await self._call_handler_hook("DATA")
            reply = "250 OK" if status is MISSING else status
        self.transactions.data(self.envelope, self.session, reply, size, relay)
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(reply)

    async def _read_data(self) -> _Data | None:
        """Read to the end of data, unstuffing and checking on the way; None if the client
        went away first."""
        reader: asyncio.StreamReader = self._reader
        data = _Data(self.data_size_limit or 0, self.line_length_limit, self.size_limit_for)
        saved_window: int = reader._limit  # type: ignore[attr-defined]
        reader._limit = DATA_WINDOW  # type: ignore[attr-defined]
        # Bytes read but not fed yet: they may hold the start of the separator.
        wire = bytearray()
        at_start = True
        try:
            while True:
                started = 1 if at_start else _separator_started(wire)
                at_start = False
                if started:
                    # Part of the separator is already read: check the rest by hand,
                    # since readuntil() only finds a separator wholly ahead of it.
                    rest = await reader.readexactly(len(SEPARATOR) - started)
                    wire += rest
                    if rest == SEPARATOR[started:] and _ends_line(data, wire):
                        break
                    continue
                try:
                    wire += await reader.readuntil(SEPARATOR)
                    if _ends_line(data, wire):
                        break
                except asyncio.LimitOverrunError as exc:
                    wire += await reader.read(exc.consumed)
                if len(wire) > DATA_WINDOW:
                    data.feed(wire[: -len(SEPARATOR)])
                    del wire[: -len(SEPARATOR)]
        except asyncio.IncompleteReadError:
            if self.transport is not None:
                self.transport.close()
            return None
        except asyncio.CancelledError:
            self._writer.close()
            raise
        finally:
            reader._limit = saved_window  # type: ignore[attr-defined]
        # Feed through the line feed before the dot; what follows is the lone-dot line.
        data.feed(wire[: len(wire) - len(SEPARATOR) + 1])
        return data


def _separator_started(wire: bytearray) -> int:
    """How many bytes of '<LF>.<CR><LF>' the unfed bytes end with."""
    for length in (3, 2, 1):
        if wire.endswith(SEPARATOR[:length]):
            return length
    return 0


def _ends_line(data: _Data, wire: bytearray) -> bool:
    """Whether the separator that ends `wire` begins with a <CR><LF>, so is the end of data."""
    at = len(wire) - len(SEPARATOR)
    if at < 0:  # the DATA command's own line break, then the lone dot: an empty message
        return True
    return (wire[at - 1 : at] if at else data.tail[-1:]) == b"\r"
