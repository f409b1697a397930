"""aiosmtpd's SMTP protocol with a faster, stricter DATA phase, BDAT (RFC 3030), connection
caps and timeouts, enhanced status codes on every reply, and implicit TLS (RFC 8314).

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

The data is unstuffed and checked as it arrives (data_lines.py), a window at a time, into a
bytearray that becomes the message without a copy: memory per message is its size plus a
window. The handler gets that buffer and nothing else keeps it, so the committer can
encrypt the message over it (ingress.py).

BDAT chunks are counted bytes, so no byte sequence ends one early; they go through the
same checks (bare <CR> or <LF>, line length, the size limit) into the same kind of buffer,
without unstuffing. Every chunk whose size parses is read to its end, whatever the reply,
so a refused chunk's bytes are never read as commands.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from borderline.delivery import is_relay_message
from borderline.smtp.data_lines import scan
from borderline.smtp.paths import MalformedPath, parse_path
from borderline.smtp.replies import with_enhanced_code
from borderline.smtp.transaction import Transaction, TransactionLog
from borderline.throttle import ConnectionLimiter

log = logging.getLogger(__name__)

DATA_WINDOW = 256 * 1024
# A line feed, then the lone-dot line: the end of data when a carriage return precedes it.
SEPARATOR = b"\n.\r\n"
# The line break that ends the DATA command stands before the first line of data.
DATA_START = b"\r\n"
# Enough of the data to tell what kind of message it is (see `size_limit_for`).
HEAD = 64
REPLY_MAX = 510
# RFC 3030 2: "BDAT" SP chunk-size [ SP "LAST" ]; 20 digits are more than any size limit.
BDAT_ARGUMENT = re.compile(r"([0-9]{1,20})(?: +(LAST))? *", re.IGNORECASE)
# The room aiosmtpd gives MAIL's parameters (SIZE=, SMTPUTF8, BODY=) beyond 512 octets.
MAIL_PARAMETERS = 26 + 10


@dataclass
class _Data:
    """One DATA transfer, fed in pieces of wire bytes that hold no end of data."""

    size_limit: int
    line_limit: int
    size_limit_for: Callable[[bytes], int] | None = None
    stuffed: bool = True  # DATA is dot-stuffed (RFC 5321 4.5.2); BDAT chunks are not
    content: bytearray = field(default_factory=bytearray)
    size: int = 0
    too_big: bool = False
    line_too_long: bool = False
    bare: str | None = None  # "<LF>" or "<CR>": the first bare line ending seen
    line: int = 0  # length of the unfinished line at the end of what was fed
    tail: bytes = DATA_START  # the last two wire bytes fed

    def feed(self, wire: bytes | bytearray) -> None:
        if not wire:
            return
        lines = scan(self.tail, wire, self.line, self.line_limit, self.stuffed)
        self.bare = self.bare or lines.bare
        self.line_too_long = self.line_too_long or lines.line_too_long
        self.line = lines.line
        if not self.too_big:
            piece = memoryview(wire)
            if lines.dots:
                # RFC 5321 4.5.2: drop the transparency dot of every line that starts with one.
                starts = [0, *(dot + 1 for dot in lines.dots)]
                ends = [*lines.dots, len(wire)]
                piece = memoryview(b"".join(piece[a:b] for a, b in zip(starts, ends, strict=True)))
            if self.size == 0 and self.size_limit_for is not None:
                self.size_limit = self.size_limit_for(bytes(piece[:HEAD]))
            self.size += len(piece)
            if self.size_limit and self.size > self.size_limit:
                self.too_big = True
                self.content = bytearray()
            else:
                self.content += piece
        self.tail = (self.tail + wire[-2:])[-2:]

    def refusal(self, host: str) -> str | None:
        """The reply refusing what was fed so far, or None while it may still be a message."""
        if self.bare is not None:
            return f"550 5.5.2 {host} Error: bare {self.bare} received"
        if self.too_big:
            return "552 5.3.4 Error: Too much mail data"
        if self.line_too_long:
            return "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)"
        return None


class FastDataSMTP(SMTP):
    """aiosmtpd's SMTP with the DATA reader above and BDAT; 421 for a connection over the
    caps of `limiter`; RFC 5321 4.5.3.2 timeouts: `timeout` for each command (and the
    first) and `data_timeout` for each block of data. `size_limit_for` gives the size limit
    for data that starts with the given bytes (default: `data_size_limit`, which EHLO
    advertises). `implicit_tls`: the listener speaks TLS from the first byte (RFC 8314
    submissions), so AUTH is offered at once and STARTTLS never. `offer_auth`: whether AUTH
    is offered at all (submission) or refused (MX). Each transaction is reported to
    `transactions` when it ends."""

    def __init__(
        self,
        handler: object,
        *,
        transactions: TransactionLog,
        limiter: ConnectionLimiter | None = None,
        data_timeout: float = 180,
        size_limit_for: Callable[[bytes], int] | None = None,
        implicit_tls: bool = False,
        offer_auth: bool = True,
        **kwargs: object,
    ) -> None:
        self.transactions = transactions
        self._last_reply = ""
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]
        self.limiter = limiter
        self.data_timeout = data_timeout
        self.size_limit_for = size_limit_for
        self.implicit_tls = implicit_tls
        self.offer_auth = offer_auth
        # aiosmtpd keeps these limits in one dict shared by every connection, and grows
        # MAIL's at each EHLO: a connection's own, fixed, instead.
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
        self._slot: str | None = None
        self._path_of: str | None = None  # the command whose path _getaddr parses
        self._refused = False
        self._in_data = False
        self._deadline = 0.0  # when the connection times out (loop time)
        self._greeted = False
        self._bare_replies = False  # the greeting and the answer to HELO/EHLO (RFC 2034 3)
        # The transaction's data: the BDAT chunks so far, or a DATA transfer read to its end.
        self._data: _Data | None = None

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
        if self.implicit_tls and self._tls_protocol is None:
            # aiosmtpd knows TLS only through STARTTLS, by the SSL protocol it set up: the
            # one asyncio set up before the first byte stands for it.
            self._tls_protocol = getattr(transport, "_ssl_protocol", None)
            if self._tls_protocol is not None and self.session is not None:
                self.session.ssl = self._tls_protocol._extra

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.transactions.dropped(self.envelope, self.session)
        if self._slot is not None and self.limiter is not None:
            self.limiter.release(self._slot)
            self._slot = None
        super().connection_lost(error)

    @property
    def tls_active(self) -> bool:
        return self._tls_protocol is not None

    def push(self, status: str | bytes) -> Coroutine[Any, Any, None]:
        """Every reply line is printable ASCII of at most 512 octets with its CRLF (RFC 5321
        4.2.1, 4.5.3.1.5), whatever client text aiosmtpd echoes into it, and every one that
        must carries an enhanced status code (RFC 2034)."""
        if isinstance(status, bytes):
            status = status.decode("ascii", "replace")
        if not self._greeted:
            self._greeted = True
        elif not self._bare_replies:
            status = with_enhanced_code(status)
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
        await self._parsing_path("MAIL", super().smtp_MAIL, arg, "5.1.7 Bad sender")
        self.transactions.mail(self.envelope, self.session, self._last_reply)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        await self._parsing_path("RCPT", super().smtp_RCPT, arg, "5.1.3 Bad recipient")
        self.transactions.rcpt(self.envelope, self._last_reply)

    async def _parsing_path(
        self,
        command: str,
        run: Callable[[str | None], Coroutine[Any, Any, None]],
        arg: str | None,
        refusal: str,
    ) -> None:
        """Run aiosmtpd's MAIL or RCPT with our path parser; a malformed path is 501."""
        self._path_of = command
        try:
            await run(arg)
        except MalformedPath as exc:
            await self.push(f"501 {refusal} address syntax: {exc}")
        finally:
            self._path_of = None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """In MAIL and RCPT aiosmtpd calls this once HELO, AUTH and (for RCPT) MAIL are
        checked, before it changes anything: a MalformedPath raised here ends the command
        (`paths.py`). VRFY keeps aiosmtpd's parser: it only ever answers 252 or 502."""
        if self._path_of is None:
            return super()._getaddr(arg)
        return parse_path(arg, reverse=self._path_of == "MAIL")

    def data_received(self, data: bytes) -> None:
        if self._in_data:  # each block that arrives restarts the data timeout
            self._deadline = self.loop.time() + self.data_timeout
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the deadline; the one timer is re-armed only if it would fire too late.
        aiosmtpd cancels and creates a timer for every command (4 % of an ingest process at
        100 KB); a timer that fires early re-arms itself for what is left (`_timeout_cb`)."""
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        timer = self._timeout_handle
        if timer is None or timer.cancelled() or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        """RFC 5321 4.5.3.2.7: say why before hanging up. (The loop may run a timer a clock
        tick early: what is left then is no reason to wait again.)"""
        if self._deadline - self.loop.time() > 0.01:
            self._timeout_handle = self.loop.call_at(self._deadline, self._timeout_cb)
            return
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _set_post_data_state(self) -> None:
        """A new transaction (after the end of data, RSET, HELO, EHLO): no chunks yet."""
        super()._set_post_data_state()  # type: ignore[no-untyped-call]
        self._data = None

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 on its MAIL command."""
        if command in ("MAIL", "RCPT") and self.envelope is not None:
            refusal = _address_refusal(str(args[0]), command, bool(self.envelope.smtp_utf8))
            if refusal is not None:
                return refusal
        return await super()._call_handler_hook(command, *args)

    async def smtp_HELO(self, hostname: str) -> None:
        self._bare_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._bare_replies = False

    async def smtp_EHLO(self, hostname: str) -> None:
        """The extensions, in the order Postfix lists them."""
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        assert self.session is not None
        self._set_rset_state()  # type: ignore[no-untyped-call]
        self.session.extended_smtp = True
        self.session.host_name = hostname
        self.command_size_limits["MAIL"] = self.command_size_limit + MAIL_PARAMETERS
        lines = [self.hostname, "PIPELINING"]
        if self.data_size_limit:
            lines.append(f"SIZE {self.data_size_limit}")
        if self.tls_context and not self.tls_active:
            lines.append("STARTTLS")
        if self.offer_auth and self.tls_active:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        lines.append("CHUNKING")
        self._bare_replies = True
        try:
            for line in lines[:-1]:
                await self.push(f"250-{line}")
            await self.push(f"250 {lines[-1]}")
        finally:
            self._bare_replies = False

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.offer_auth:
            await self.push("503 5.5.1 Error: authentication not enabled")
            return
        await super().smtp_AUTH(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if self._data is not None:
            await self.push("503 5.5.1 Error: DATA in a transaction that BDAT began")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        with self._receiving_data():
            self._data = await self._read_data()
        if self._data is not None:
            await self._end_of_data()

    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030. The chunk is read whenever its size parses, refused or not. A refused
        chunk ends the transaction, so the chunks a client pipelined after it are refused
        (503) and read too, and nothing of it is stored."""
        argument = BDAT_ARGUMENT.fullmatch(arg or "")
        if argument is None:
            # How many bytes follow is unknown, so nothing after this line can be trusted.
            await self.push("501 5.5.4 Syntax: BDAT chunk-size [LAST]")
            if self.transport is not None:
                self.transport.close()
            return
        size, last = int(argument[1]), argument[2] is not None
        refusal = self._bdat_refusal()
        if refusal is None and self._data is None:
            self._data = _Data(
                self.data_size_limit or 0,
                self.line_length_limit,
                self.size_limit_for,
                stuffed=False,
            )
        if not await self._read_chunk(size, None if refusal is not None else self._data):
            return
        if refusal is not None:
            await self.push(refusal)
            return
        assert self._data is not None
        if not last:
            failed = self._data.refusal(self.hostname)
            if failed is None:
                await self.push(f"250 2.0.0 {size} octets received")
                return
            log.info("%r: BDAT refused: %s", self.session and self.session.peer, failed)
            self._set_post_data_state()
            await self.push(failed)
            return
        if not self._data.tail.endswith(b"\n"):
            # RFC 5322: the last line ends too (and a bare <CR> at the very end shows now).
            self._data.feed(b"\r\n")
        await self._end_of_data()

    def _bdat_refusal(self) -> str | None:
        assert self.session is not None and self.envelope is not None
        if not self.session.host_name:
            return "503 5.5.1 Error: send EHLO first"
        if self._auth_required and not self.session.authenticated:
            return "530 5.7.0 Authentication required"
        if not self.envelope.rcpt_tos:
            return "503 5.5.1 Error: need MAIL and RCPT commands"
        return None

    async def _read_chunk(self, size: int, into: _Data | None) -> bool:
        """Read a BDAT chunk a window at a time, fed into `into` (or dropped); False if the
        client went away first."""
        with self._receiving_data():
            try:
                while size > 0:
                    piece = await self._reader.readexactly(min(size, DATA_WINDOW))
                    size -= len(piece)
                    if into is not None:
                        into.feed(piece)
            except asyncio.IncompleteReadError:
                if self.transport is not None:
                    self.transport.close()
                return False
            except asyncio.CancelledError:
                self._writer.close()
                raise
        return True

    @contextlib.contextmanager
    def _receiving_data(self) -> Iterator[None]:
        """Under the data timeout, restarted by every block that arrives (`_timeout_cb`),
        then back under the command timeout."""
        self._in_data = True
        self._reset_timeout(self.data_timeout)
        try:
            yield
        finally:
            self._in_data = False
        self._reset_timeout()

    async def _end_of_data(self) -> None:
        """Refuse the transaction's data, or hand it to the handler as the message; either
        way the transaction ends. Nothing but the envelope keeps the message meanwhile."""
        assert self.envelope is not None and self._data is not None
        data, self._data = self._data, None
        size, relay = data.size, False
        reply = data.refusal(self.hostname)
        if reply is not None:
            if data.bare is not None:
                log.debug("%r: bare %s in data", self.session and self.session.peer, data.bare)
        else:
            assert isinstance(self.envelope, Transaction)
            relay = is_relay_message(data.content[:HEAD])
            # The buffer itself: the handler takes it, and may encrypt the message over it.
            self.envelope.message = data.content
            del data
            status = await self._call_handler_hook("DATA")
            reply = "250 2.0.0 OK" if status is MISSING else status
        self.transactions.data(self.envelope, self.session, reply, size, relay)
        self._set_post_data_state()
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


def _address_refusal(address: str, command: str, smtp_utf8: bool) -> str | None:
    """A MAIL or RCPT address this server must refuse before its handler sees it."""
    if address.isascii():
        return None
    if any("\udc80" <= c <= "\udcff" for c in address):  # bytes that are not UTF-8
        detail = "5.1.7" if command == "MAIL" else "5.1.3"
        return f"553 {detail} Error: the address is not valid UTF-8"
    if not smtp_utf8:
        return "553 5.6.7 Error: a non-ASCII address needs the SMTPUTF8 parameter on MAIL"
    return None
