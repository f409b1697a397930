"""One IMAP connection: reading commands with their literals, running each in the state it
needs (the commands are in `imap/commands/`), the output, and the selected mailbox's sync."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from borderline.imap.commands import COMMANDS
from borderline.imap.commands.base import Request
from borderline.imap.fetch import Contents
from borderline.imap.limits import (
    AUTOLOGOUT,
    FLUSH_AT,
    LINE_LIMIT,
    MAX_BAD_COMMANDS,
    OTHER_LITERAL_LIMIT,
    PREAUTH_TIMEOUT,
)
from borderline.imap.protocol import Args, Atom, ParseError, literal_announced, tokenize
from borderline.imap.replies import AccountGone, Reply, SelectionGone, no
from borderline.imap.state import (
    Account,
    Authenticated,
    Logout,
    NotAuthenticated,
    Selected,
    State,
)
from borderline.imap.view import Changes, MailboxView, WouldWrite
from borderline.store import MailboxNotFound, StoreError
from borderline.throttle import Guesses
from borderline.vault import AccessLogUnavailable, Justification, KeyReleaseDenied

if TYPE_CHECKING:
    from borderline.imap.server import RegionImap

log = logging.getLogger(__name__)

# writev(2) takes at most this many buffers (IOV_MAX on Linux).
WRITEV_BUFFERS = 1024
TAG = re.compile(rb"^[\x21\x23\x24\x26\x27\x2c-\x5a\x5e-\x7a\x7c\x7e]+$")
P = ParamSpec("P")
T = TypeVar("T")


def write_through(transport: asyncio.WriteTransport, chunks: list[bytes]) -> list[bytes]:
    """Write what the socket takes at once straight from `chunks` with writev; the rest,
    for the transport to buffer. Python 3.11's `writelines` first joins every chunk into
    one new buffer, a copy of each message a FETCH sends (bench/RESULTS.md). Only on a
    plain socket whose transport holds nothing, so the output stays in order; an error
    (the socket is full, the peer is gone) is left to the transport's own write to meet."""
    sock = transport.get_extra_info("socket")
    if (
        sock is None
        or transport.get_extra_info("sslcontext") is not None
        or transport.is_closing()
        or transport.get_write_buffer_size()
    ):
        return chunks
    rest = chunks
    while rest:
        vector = rest[:WRITEV_BUFFERS]
        try:
            sent = os.writev(sock.fileno(), vector)
        except OSError:
            return rest
        whole = 0
        for chunk in vector:
            if sent < len(chunk):
                break
            sent -= len(chunk)
            whole += 1
        if whole < len(vector):
            return [rest[whole][sent:], *rest[whole + 1 :]]
        rest = rest[whole:]
    return rest


class Session:
    def __init__(
        self,
        server: RegionImap,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: bool,
    ) -> None:
        self.server = server
        self.region = server.region
        self.store = server.region.store
        self.reader = reader
        self.writer = writer
        self.tls = tls
        peer = writer.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        self.state: State = NotAuthenticated()
        # LOGIN then AUTHENTICATE with the same wrong password is one guess (throttle.py).
        self.guesses = Guesses(server.throttle)
        # What the client enabled (ENABLE, or implied by a command: RFC 7162 3.1).
        self.utf8 = False
        self.condstore = False
        self.qresync = False
        # ENABLE IMAP4rev2 (RFC 9051 appendix A): no \Recent, ESEARCH for every SEARCH,
        # UTF-8 mailbox names, a LIST response instead of UNSEEN on SELECT.
        self.imap4rev2 = False
        # SEARCHRES (RFC 5182): the UIDs the last SEARCH RETURN (SAVE) found, what "$" names;
        # every selection starts with none.
        self.search_result: list[int] = []
        self.bad_commands = 0
        # Run once the tagged reply is out (STARTTLS starts TLS only after its OK).
        self.after_reply: Callable[[], Awaitable[None]] | None = None
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        # The sync the running command ends with (whether it announces expunges; None: no
        # sync), and what a store call of the command read for it (`stored_then_changes`).
        self._sync_at_end: bool | None = None
        self._changes_read: tuple[MailboxView, Changes | None] | None = None

    @property
    def utf8_names(self) -> bool:
        """Mailbox names (and quoted strings) in UTF-8, not modified UTF-7: after ENABLE
        UTF8=ACCEPT (RFC 6855 3) or IMAP4rev2 (RFC 9051 5.1)."""
        return self.utf8 or self.imap4rev2

    @property
    def closing(self) -> bool:
        return isinstance(self.state, Logout)

    def log_out(self) -> None:
        """Enter the Logout state: the connection closes once the pending output is sent."""
        self.server.unwatch(self)
        self.state = Logout()

    # output

    def emit(self, line: bytes) -> None:
        self._out.append(line + b"\r\n")
        self._out_size += len(line) + 2

    def emit_chunks(self, chunks: list[bytes]) -> None:
        self._out.extend(chunks)
        self._out_size += sum(len(c) for c in chunks)

    async def flush(self) -> None:
        if self._out:
            rest = write_through(self.writer.transport, self._out)
            if rest:
                self.writer.writelines(rest)
            self._out.clear()
            self._out_size = 0
        await self.writer.drain()

    async def flush_if_full(self) -> None:
        if self._out_size >= FLUSH_AT:
            await self.flush()
            await asyncio.sleep(0)  # a long FETCH must not starve SMTP on the same loop

    # the connection

    async def run(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.emit(
            b"* OK [CAPABILITY "
            + self.capabilities().encode()
            + b"] Borderline IMAP ("
            + self.region.id.encode()
            + b") ready"
        )
        try:
            await self.flush()
            while not self.closing:
                idle = isinstance(self.state, NotAuthenticated)
                timeout = PREAUTH_TIMEOUT if idle else AUTOLOGOUT
                try:
                    command = await asyncio.wait_for(self.read_command(), timeout)
                except TimeoutError:
                    self.emit(b"* BYE Autologout; idle for too long")
                    break
                except asyncio.LimitOverrunError:
                    self.emit(b"* BYE Command line too long")
                    break
                if command is not None:
                    await self.execute(command)
                if self.bad_commands >= MAX_BAD_COMMANDS:
                    self.emit(b"* BYE Too many invalid commands")
                    break
            await self.flush()
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,  # an overlong line inside a command (IDLE, AUTHENTICATE)
            ssl.SSLError,
            TimeoutError,  # a TLS handshake after STARTTLS that never completes
        ):
            pass
        finally:
            self.server.unwatch(self)
            self.writer.close()

    async def readline(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise
        except ValueError as exc:  # the reader's own limit check on a partial buffer
            raise asyncio.LimitOverrunError(str(exc), 0) from exc

    async def read_command(self) -> bytes | None:
        """A whole command with its literals inline, or None when it was refused for size.
        Its lines together are bounded like one line, its literals by the literal limit."""
        parts = [await self.readline()]
        literals = 0
        lines = len(parts[0])
        while True:
            announced = literal_announced(parts[-1])
            if announced is None:
                return b"".join(parts)
            size, nonsync = announced
            words = parts[0].split(b" ", 2)
            tag = words[0].decode("ascii") if TAG.match(words[0]) else "*"
            is_append = (
                not isinstance(self.state, NotAuthenticated)
                and len(words) > 1
                and words[1].upper() == b"APPEND"
            )
            limit = self.server.max_message_size if is_append else OTHER_LITERAL_LIMIT
            literals += size
            if literals > limit or lines > LINE_LIMIT:
                if nonsync:
                    await self._discard(size)
                if lines > LINE_LIMIT:
                    self.emit(f"{tag} BAD command of over {LINE_LIMIT} octets of syntax".encode())
                else:
                    what = "message" if is_append else "literal"
                    self.emit(
                        f"{tag} {'NO [TOOBIG]' if is_append else 'BAD'} {what} of {literals}"
                        f" octets is over the limit of {limit} octets".encode()
                    )
                await self.flush()
                return None
            if not nonsync:
                self.emit(b"+ Ready for literal data")
                await self.flush()
            parts.append(await self.reader.readexactly(size))
            parts.append(await self.readline())
            lines += len(parts[-1])

    async def _discard(self, size: int) -> None:
        """Swallow a refused non-synchronizing literal and the rest of its command."""
        while True:
            while size:
                chunk = await self.reader.read(min(size, 1 << 20))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(chunk)
            announced = literal_announced(await self.readline())
            if announced is None or not announced[1]:
                return
            size = announced[0]

    async def execute(self, command: bytes) -> None:
        tag_bytes, _, rest = command.partition(b" ")
        if not TAG.match(tag_bytes) or not rest.strip():
            self.bad_commands += 1
            self.emit(b"* BAD Expected: tag SP command")
            await self.flush()
            return
        tag = tag_bytes.decode("ascii")
        name = ""
        announces_expunges = sync_after = True
        try:
            tokens = tokenize(rest)
            if not tokens or not isinstance(tokens[0], Atom):
                raise ParseError("expected a command name")
            name = tokens[0].upper()
            handler = COMMANDS.get(name)
            if handler is None:
                raise ParseError(f"unknown command {str(tokens[0])[:40]!r}")
            refusal = handler.refusal(name, self.state)
            if refusal is not None:
                raise ParseError(refusal)
            announces_expunges = handler.announces_expunges
            sync_after = handler.sync_after
            self._sync_at_end = announces_expunges if sync_after else None
            self._changes_read = None
            if name != "LOGOUT":
                self.check_account()
                if isinstance(self.state, Selected):
                    await self.check_selected()
            text = await handler.run(self, self.state, Request(tag, name, Args(tokens[1:], name)))
            status = "OK " + text
            self.bad_commands = 0
        except SelectionGone as gone:
            self.emit(gone.bye)
            self.log_out()
            await self.flush()
            return
        except Reply as reply:
            status = f"{reply.status} {reply.text}"
            if reply.status == "BAD":
                self.bad_commands += 1
        except ParseError as exc:
            status = f"BAD {exc}"
            self.bad_commands += 1
        except KeyReleaseDenied as exc:
            status = f"NO {exc}"
        except MailboxNotFound as exc:  # deleted by another session in the meantime
            status = f"NO [NONEXISTENT] {exc}"
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise
        except Exception:
            log.exception("imap %s: %s failed", self.region.id, name or "command")
            status = "NO [SERVERBUG] internal error; the command was not completed"
        if isinstance(self.state, Selected) and sync_after:
            with contextlib.suppress(Reply):  # store unavailable: updates come later
                await self.sync(self.state.view, allow_expunge=announces_expunges)
        self.emit(f"{tag} {status}".encode("utf-8", "replace"))
        await self.flush()
        after, self.after_reply = self.after_reply, None
        if after is not None and not self.closing and status.startswith("OK"):
            await after()

    # the selected mailbox

    def select(self, account: Account, view: MailboxView) -> None:
        self.state = Selected(account, view)
        self.search_result = []
        self.server.watch(self, view.id)

    def deselect(self) -> None:
        self.server.unwatch(self)
        self.search_result = []
        if isinstance(self.state, Selected):
            self.state = Authenticated(self.state.account)

    async def sync(self, view: MailboxView, allow_expunge: bool) -> None:
        """Report what other sessions changed in the selected mailbox (untagged EXPUNGE,
        FETCH FLAGS, EXISTS)."""
        read, self._changes_read = self._changes_read, None
        if read is not None and read[0] is view:
            changes = read[1]
        else:
            changes = await self.stored(view.read_changes, allow_expunge)
        if changes is not None and self.viewing(view):
            for line in view.apply(changes, allow_expunge, self.condstore, self.qresync):
                self.emit(line)

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 3.1): with a mailbox selected, the first
        one also reports the mailbox's HIGHESTMODSEQ."""
        if not self.condstore and isinstance(self.state, Selected):
            self.emit(b"* OK [HIGHESTMODSEQ %d] highest modseq" % self.state.view.modseq)
        self.condstore = True

    def selected_modseq(self) -> int:
        """The mod-sequence the selected mailbox was last reported at (0 if none)."""
        return self.state.view.modseq if isinstance(self.state, Selected) else 0

    def viewing(self, view: MailboxView) -> bool:
        return isinstance(self.state, Selected) and self.state.view is view

    def check_account(self) -> None:
        """Before every command once logged in: the account must not have been deleted since
        the login, or the session ends, as it would reach a new account of the same address."""
        state = self.state
        if not isinstance(state, Authenticated | Selected):
            return
        account = state.account
        if account.generation != self.server.account_generation(account.address):
            self.deselect()
            raise AccountGone

    def logged_in_as(self, address: str) -> bool:
        state = self.state
        return isinstance(state, Authenticated | Selected) and state.account.address == address

    async def check_selected(self) -> None:
        """Before every command while a mailbox is selected: it must still exist and be the
        account's, or the session ends (RFC 9051 7.1.5 BYE; Dovecot does the same). Deletes
        and renames of an account's mailboxes go through this server, which counts them per
        account, so the store is asked again only after one of them (a rename keeps the
        selection under its new name, RFC 2180 3.4)."""
        assert isinstance(self.state, Selected)
        view = self.state.view
        epoch = self.server.mailbox_epoch(self.state.account.address)
        if view.epoch == epoch:
            return
        current = await self.stored(view.current)
        if not self.viewing(view):
            return
        if current is None:
            self.deselect()
            raise SelectionGone
        view.mailbox, view.epoch = current, epoch

    # the store and the work threads

    async def stored(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A store or vault call, on the region's store threads and within its store timeout:
        the event loop never waits on the store, and a store that fails or hangs is
        NO [UNAVAILABLE]. The call must change nothing of the session's own state: after a
        timeout it may still be running while the session goes on."""
        if self._stuck is not None and not self._stuck.done():
            raise no("[UNAVAILABLE] the mail store has not answered this session's last request")
        future = self.server.store_threads.submit(call, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.server.store_timeout)
        except TimeoutError:
            if not future.cancelled():
                self._stuck = future
            raise no("[UNAVAILABLE] the mail store did not answer in time; try again") from None
        except MailboxNotFound:
            raise
        except (StoreError, AccessLogUnavailable) as exc:
            raise no(f"[UNAVAILABLE] {exc}") from None

    async def stored_then_changes(
        self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`stored`, and with a mailbox selected what changed in it since the last sync, in
        the same store call, which the sync the command ends with then takes instead of
        reading: each trip to the store threads and back is most of a short command's time.
        Only for a command that changes nothing in the selected mailbox after it. That read
        never writes and never fails the command: where it would claim \\Recent or the
        store refuses it, the sync reads on its own (so a call that times out and runs on
        changes nothing)."""
        state, allow_expunge = self.state, self._sync_at_end
        if not isinstance(state, Selected) or allow_expunge is None:
            return await self.stored(call, *args, **kwargs)
        view = state.view

        def both() -> tuple[T, tuple[MailboxView, Changes | None] | None]:
            result = call(*args, **kwargs)
            try:
                return result, (view, view.read_changes(allow_expunge, may_write=False))
            except (WouldWrite, StoreError):
                return result, None

        result, self._changes_read = await self.stored(both)
        return result

    async def work(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Parsing, rendering and matching of messages, on the region's work threads, so no
        session stalls the others; awaited to its end, so it may change session state."""
        loop = asyncio.get_running_loop()
        task = functools.partial(call, *args, **kwargs)
        return await loop.run_in_executor(self.server.work_threads, task)

    async def content(self, account: Account) -> Contents:
        """The session's first content read releases the account key, logged first."""
        if account.contents is None:
            key = await self.stored(
                self.region.vault.release,
                account.address,
                Justification.CUSTOMER_INITIATED_ACCESS,
                f"imap:{account.address}@{self.ip}",
            )
            account.contents = Contents(key)
        return account.contents

    # capabilities

    def plaintext_allowed(self) -> bool:
        """Passwords only over TLS, unless the operator allowed cleartext logins: a peer's
        address proves nothing (a local TLS proxy makes every client look local)."""
        return self.tls or self.server.config.cloud.allow_cleartext_login

    def capabilities(self) -> str:
        caps = [
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "LOGIN-REFERRALS",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SPECIAL-USE",
            "UIDPLUS",
            "MULTIAPPEND",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "BINARY",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "UTF8=ACCEPT",
            "STATUS=SIZE",
            f"APPENDLIMIT={self.server.max_message_size}",
        ]
        if isinstance(self.state, NotAuthenticated):
            if not self.tls and self.server.tls is not None:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.plaintext_allowed() else "LOGINDISABLED")
        return " ".join(caps)

    async def start_tls(self) -> None:
        assert self.server.tls is not None
        # Anything pipelined after STARTTLS arrived in cleartext: refuse it (CVE-2011-0411).
        if getattr(self.reader, "_buffer", b""):
            self.log_out()
            return
        await self.writer.start_tls(self.server.tls)
        self.tls = True
