"""One IMAP connection: reading commands with their literals, state, and every command."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import functools
import logging
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from borderline import observe
from borderline.imap.fetch import (
    Contents,
    FetchItem,
    Vanished,
    fetch_response,
    parse_items,
    read_blobs,
)
from borderline.imap.mime import Part
from borderline.imap.protocol import (
    Args,
    Atom,
    ParseError,
    SequenceSet,
    Token,
    as_text,
    decode_mailbox,
    encode_mailbox,
    flag_list,
    is_number,
    literal_announced,
    parse_date_time,
    quoted_or_literal,
    tokenize,
    uid_set_text,
)
from borderline.imap.search import BadCharset, Candidate, Predicate, parse_search
from borderline.imap.selected import Changes, Selected
from borderline.store import MailboxInfo, MailboxNotFound, MessageInfo, StoreError
from borderline.vault import AccessLogUnavailable, Justification, KeyReleaseDenied

if TYPE_CHECKING:
    from borderline.imap.server import RegionImap

log = logging.getLogger(__name__)

LINE_LIMIT = 64 * 1024
OTHER_LITERAL_LIMIT = 64 * 1024
FLUSH_AT = 256 * 1024
PREAUTH_TIMEOUT = 120.0
AUTOLOGOUT = 30 * 60.0
IDLE_POLL = 1.0
MAX_BAD_COMMANDS = 20
MAX_MAILBOX_NAME = 1024
# FETCH and SEARCH read and decrypt messages in batches of this many, or this many octets.
BATCH_MESSAGES = 64
BATCH_OCTETS = 8 * 1024 * 1024
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
TAG = re.compile(rb"^[\x21\x23\x24\x26\x27\x2c-\x5a\x5e-\x7a\x7c\x7e]+$")
NOT_AUTH, AUTH, SELECTED = "not authenticated", "authenticated", "selected"
FAILED_LOGIN = "[AUTHENTICATIONFAILED] invalid user name or password"
P = ParamSpec("P")
T = TypeVar("T")


class Reply(Exception):
    """Ends a command with a tagged NO or BAD; the text is what the client sees."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def no(text: str) -> Reply:
    return Reply("NO", text)


class SelectionGone(Exception):
    """The selected mailbox was deleted by another session: the session ends with BYE."""


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
        self.state = NOT_AUTH
        self.address = ""
        self.selected: Selected | None = None
        self.contents: Contents | None = None
        self.utf8 = False
        self.condstore = False
        self.closing = False
        self.bad_commands = 0
        self._stuck: concurrent.futures.Future[Any] | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._handlers: dict[str, tuple[Callable[[str, Args], Awaitable[str]], str]] = {
            "CAPABILITY": (self.cmd_capability, NOT_AUTH),
            "NOOP": (self.cmd_noop, NOT_AUTH),
            "LOGOUT": (self.cmd_logout, NOT_AUTH),
            "ID": (self.cmd_id, NOT_AUTH),
            "STARTTLS": (self.cmd_starttls, NOT_AUTH),
            "LOGIN": (self.cmd_login, NOT_AUTH),
            "AUTHENTICATE": (self.cmd_authenticate, NOT_AUTH),
            "ENABLE": (self.cmd_enable, AUTH),
            "NAMESPACE": (self.cmd_namespace, AUTH),
            "LIST": (self.cmd_list, AUTH),
            "LSUB": (self.cmd_lsub, AUTH),
            "STATUS": (self.cmd_status, AUTH),
            "CREATE": (self.cmd_create, AUTH),
            "DELETE": (self.cmd_delete, AUTH),
            "RENAME": (self.cmd_rename, AUTH),
            "SUBSCRIBE": (self.cmd_subscribe, AUTH),
            "UNSUBSCRIBE": (self.cmd_unsubscribe, AUTH),
            "SELECT": (self.cmd_select, AUTH),
            "EXAMINE": (self.cmd_examine, AUTH),
            "APPEND": (self.cmd_append, AUTH),
            "IDLE": (self.cmd_idle, AUTH),
            "CHECK": (self.cmd_check, SELECTED),
            "CLOSE": (self.cmd_close, SELECTED),
            "UNSELECT": (self.cmd_unselect, SELECTED),
            "EXPUNGE": (self.cmd_expunge, SELECTED),
            "FETCH": (self.cmd_fetch, SELECTED),
            "STORE": (self.cmd_store, SELECTED),
            "COPY": (self.cmd_copy, SELECTED),
            "MOVE": (self.cmd_move, SELECTED),
            "SEARCH": (self.cmd_search, SELECTED),
            "UID": (self.cmd_uid, SELECTED),
        }

    # output

    def emit(self, line: bytes) -> None:
        self._out.append(line + b"\r\n")
        self._out_size += len(line) + 2

    def emit_chunks(self, chunks: list[bytes]) -> None:
        self._out.extend(chunks)
        self._out_size += sum(len(c) for c in chunks)

    async def flush(self) -> None:
        if self._out:
            self.writer.writelines(self._out)
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
                timeout = PREAUTH_TIMEOUT if self.state == NOT_AUTH else AUTOLOGOUT
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
            is_append = self.state != NOT_AUTH and len(words) > 1 and words[1].upper() == b"APPEND"
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
        try:
            tokens = tokenize(rest)
            if not tokens or not isinstance(tokens[0], Atom):
                raise ParseError("expected a command name")
            name = tokens[0].upper()
            if name not in self._handlers:
                raise ParseError(f"unknown command {str(tokens[0])[:40]!r}")
            handler, needed = self._handlers[name]
            if needed != NOT_AUTH and self.state == NOT_AUTH:
                raise ParseError(f"{name} needs an authenticated session: LOGIN first")
            if needed == SELECTED and self.state != SELECTED:
                raise ParseError(f"{name} needs a selected mailbox: SELECT one first")
            if name in ("LOGIN", "AUTHENTICATE", "STARTTLS") and self.state != NOT_AUTH:
                raise ParseError(f"{name}: already authenticated")
            if self.selected is not None and name != "LOGOUT":
                await self.check_selected()
            status = "OK " + await handler(tag, Args(tokens[1:], name))
            self.bad_commands = 0
        except SelectionGone:
            self.emit(b"* BYE Selected mailbox was deleted, have to disconnect")
            self.closing = True
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
        if self.selected is not None and name not in ("LOGOUT", "IDLE"):
            with contextlib.suppress(Reply):  # store unavailable: updates come later
                await self._sync(allow_expunge=name not in ("FETCH", "STORE", "SEARCH", "COPY"))
        self.emit(f"{tag} {status}".encode("utf-8", "replace"))
        await self.flush()
        if self.closing:
            return
        if name == "STARTTLS" and status.startswith("OK"):
            await self._start_tls()

    async def _sync(self, allow_expunge: bool) -> None:
        selected = self.selected
        assert selected is not None
        changes: Changes | None = await self.stored(selected.read_changes, allow_expunge)
        if changes is not None and self.selected is selected:
            for line in selected.apply(changes, allow_expunge, self.condstore):
                self.emit(line)

    async def check_selected(self) -> None:
        """Before every command while a mailbox is selected: it must still exist and be the
        account's, or the session ends (RFC 9051 7.1.5 BYE; Dovecot does the same). Deletes
        and renames of an account's mailboxes go through this server, which counts them per
        account, so the store is asked again only after one of them (a rename keeps the
        selection under its new name, RFC 2180 3.4)."""
        selected = self.selected
        assert selected is not None
        epoch = self.server.mailbox_epoch(self.address)
        if selected.epoch == epoch:
            return
        current = await self.stored(selected.current)
        if self.selected is not selected:
            return
        if current is None:
            self._deselect()
            raise SelectionGone
        selected.mailbox, selected.epoch = current, epoch

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

    async def work(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Parsing, rendering and matching of messages, on the region's work threads, so no
        session stalls the others; awaited to its end, so it may change session state."""
        loop = asyncio.get_running_loop()
        task = functools.partial(call, *args, **kwargs)
        return await loop.run_in_executor(self.server.work_threads, task)

    # capabilities and greeting state

    def plaintext_allowed(self) -> bool:
        """Passwords only over TLS, unless the operator allowed cleartext logins: a peer's
        address proves nothing (a local TLS proxy makes every client look local)."""
        return self.tls or self.server.config.cloud.allow_cleartext_login

    def capabilities(self) -> str:
        caps = [
            "IMAP4rev1",
            "LITERAL+",
            "SASL-IR",
            "LOGIN-REFERRALS",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "UTF8=ACCEPT",
            f"APPENDLIMIT={self.server.max_message_size}",
        ]
        if self.state == NOT_AUTH:
            if not self.tls and self.server.tls is not None:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.plaintext_allowed() else "LOGINDISABLED")
        return " ".join(caps)

    async def cmd_capability(self, tag: str, args: Args) -> str:
        args.end()
        self.emit(b"* CAPABILITY " + self.capabilities().encode())
        return "CAPABILITY completed"

    async def cmd_noop(self, tag: str, args: Args) -> str:
        args.end()
        return "NOOP completed"

    async def cmd_check(self, tag: str, args: Args) -> str:
        args.end()
        return "CHECK completed"

    async def cmd_logout(self, tag: str, args: Args) -> str:
        args.end()
        self.emit(b"* BYE Borderline logging out")
        self.closing = True
        return "LOGOUT completed"

    async def cmd_id(self, tag: str, args: Args) -> str:
        token = args.next("ID parameters")
        if not (isinstance(token, list) or (isinstance(token, Atom) and token.upper() == "NIL")):
            raise ParseError("ID: expected a parameter list or NIL")
        args.end()
        self.emit(b'* ID ("name" "Borderline" "vendor" "Borderline" "version" "0.1.0")')
        return "ID completed"

    async def cmd_starttls(self, tag: str, args: Args) -> str:
        args.end()
        if self.tls or self.server.tls is None:
            raise Reply("BAD", "STARTTLS: TLS is already active or not offered here")
        return "Begin TLS negotiation now"

    async def _start_tls(self) -> None:
        assert self.server.tls is not None
        # Anything pipelined after STARTTLS arrived in cleartext: refuse it (CVE-2011-0411).
        if getattr(self.reader, "_buffer", b""):
            self.closing = True
            return
        await self.writer.start_tls(self.server.tls)
        self.tls = True

    # authentication

    async def cmd_login(self, tag: str, args: Args) -> str:
        user = args.astring("user name")
        password = args.astring("password")
        args.end()
        return await self._login(user, password)

    async def cmd_authenticate(self, tag: str, args: Args) -> str:
        mechanism = args.atom("SASL mechanism").upper()
        initial = args.raw("initial response") if args.more() else None
        args.end()
        if mechanism != "PLAIN":
            raise no(f"AUTHENTICATE: mechanism {mechanism} is not supported (use PLAIN)")
        if initial is None:
            self.emit(b"+ ")
            await self.flush()
            initial = (await self.readline()).rstrip(b"\r\n")
        if initial == b"*":
            raise Reply("BAD", "AUTHENTICATE cancelled")
        try:
            decoded = b"" if initial == b"=" else base64.b64decode(initial, validate=True)
            authzid, authcid, password = decoded.split(b"\0")
        except (binascii.Error, ValueError):
            raise Reply("BAD", "AUTHENTICATE: malformed PLAIN response") from None
        user = authcid.decode("utf-8", "replace")
        if authzid and authzid.decode("utf-8", "replace").lower() != user.lower():
            raise no("[AUTHORIZATIONFAILED] authorization identity must be the user")
        return await self._login(user, password.decode("utf-8", "replace"))

    async def _login(self, user: str, password: str) -> str:
        if not self.plaintext_allowed():
            raise no("[PRIVACYREQUIRED] use STARTTLS or the implicit TLS port first")
        address = user.strip().lower()
        throttle = self.server.throttle
        if throttle.locked(address, self.ip):
            observe.login(self.region.id, "imap", "locked", address=address, ip=self.ip)
            raise no("[UNAVAILABLE] too many failed logins; try again later")
        home = await self.stored(self.region.directory.home, address) if "@" in address else None
        if home is not None and home != self.region.id:
            # Refer only once the home region says the password is right: a referral names
            # the home region, so it must tell nothing to a guesser (who gets exactly the
            # reply, delay and throttling of an unknown account).
            vault = self.region.vault
            referred = await throttle.attempt(
                lambda: self.server.peers.password_is_right(
                    vault, home, address, password, self.ip
                ),
                address,
                self.ip,
            )
            observe.login(
                self.region.id,
                "imap",
                "referred" if referred else "failed",
                address=address,
                ip=self.ip,
            )
            if referred:
                raise no(self.server.referral(address, home))
            raise no(FAILED_LOGIN)
        ok = await throttle.attempt(
            lambda: self.region.check_password(address, password) and home == self.region.id,
            address,
            self.ip,
        )
        observe.login(self.region.id, "imap", "ok" if ok else "failed", address=address, ip=self.ip)
        if not ok:
            raise no(FAILED_LOGIN)
        self.address = address
        self.state = AUTH
        return f"[CAPABILITY {self.capabilities()}] logged in"

    async def content(self) -> Contents:
        """The session's first content read releases the account key, logged first."""
        if self.contents is None:
            key = await self.stored(
                self.region.vault.release,
                self.address,
                Justification.CUSTOMER_INITIATED_ACCESS,
                f"imap:{self.address}@{self.ip}",
            )
            self.contents = Contents(key)
        return self.contents

    # authenticated state

    async def cmd_enable(self, tag: str, args: Args) -> str:
        enabled = []
        while args.more():
            capability = args.atom("capability").upper()
            if capability == "UTF8=ACCEPT":
                self.utf8 = True
                enabled.append(capability)
            elif capability == "CONDSTORE":
                self.condstore = True
                enabled.append(capability)
        self.emit(("* ENABLED " + " ".join(enabled)).rstrip().encode())
        return "ENABLE completed"

    async def cmd_namespace(self, tag: str, args: Args) -> str:
        args.end()
        self.emit(b'* NAMESPACE (("" "/")) NIL NIL')
        return "NAMESPACE completed"

    def mailbox_name(self, args: Args) -> str:
        name = args.astring("mailbox name")
        if not self.utf8:
            name = decode_mailbox(name)
        if name.upper() == "INBOX":
            return "INBOX"
        name = name.rstrip("/")
        if not name or "//" in name or name.startswith("/") or any(c in name for c in "*%"):
            raise no(f"[CANNOT] {name!r} is not a valid mailbox name")
        return name

    def new_mailbox_name(self, args: Args) -> str:
        """A name for a mailbox about to exist (CREATE, RENAME): no control characters
        (RFC 9051 5.1 asks for Net-Unicode, RFC 5198) and at most MAX_MAILBOX_NAME octets."""
        name = self.mailbox_name(args)
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
            raise no("[CANNOT] mailbox names cannot contain control characters")
        if len(name.encode("utf-8", "surrogateescape")) > MAX_MAILBOX_NAME:
            raise no(f"[CANNOT] mailbox names are limited to {MAX_MAILBOX_NAME} octets")
        return name

    def encode_name(self, name: str) -> bytes:
        encoded = name.encode() if self.utf8 else encode_mailbox(name)
        return quoted_or_literal(encoded, self.utf8)

    async def mailbox(self, name: str, trycreate: bool = False) -> MailboxInfo:
        try:
            return await self.stored(self.store.mailbox, self.address, name)
        except MailboxNotFound:
            code = "TRYCREATE" if trycreate else "NONEXISTENT"
            raise no(f"[{code}] no mailbox {name!r}") from None

    async def cmd_list(self, tag: str, args: Args) -> str:
        selection: set[str] = set()
        if isinstance(args.peek(), list):
            selection = {as_text(t, "LIST: bad option").upper() for t in args.list("options")}
        reference = args.astring("reference name")
        patterns = [as_text(t, "LIST: bad pattern") for t in _one_or_list(args.next("pattern"))]
        returns: set[str] = set()
        if args.more():
            if args.atom("RETURN").upper() != "RETURN":
                raise ParseError("LIST: expected RETURN")
            returns = {as_text(t, "LIST: bad option").upper() for t in args.list("options")}
        args.end()
        await self._list("LIST", reference, patterns, selection, returns)
        return "LIST completed"

    async def cmd_lsub(self, tag: str, args: Args) -> str:
        reference = args.astring("reference name")
        pattern = args.astring("pattern")
        args.end()
        await self._list("LSUB", reference, [pattern], {"SUBSCRIBED"}, set())
        return "LSUB completed"

    async def _list(
        self, kind: str, reference: str, patterns: list[str], selection: set[str], returns: set[str]
    ) -> None:
        if patterns == [""]:
            self.emit(b'* LIST (\\Noselect) "/" ""')
            return
        regexes = []
        for pattern in patterns:
            full = reference + pattern
            if not self.utf8:
                full = decode_mailbox(full)
            if full[:5].upper() == "INBOX":  # INBOX is case-insensitive (RFC 3501 5.1)
                full = "INBOX" + full[5:]
            body = "".join(
                ".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full
            )
            regexes.append(re.compile(f"^{body}$", re.DOTALL))
        boxes = await self.stored(self.store.mailboxes, self.address)
        names = {box.name for box in boxes}
        for box in boxes:
            if not any(r.match(box.name) for r in regexes):
                continue
            if "SUBSCRIBED" in selection and not box.subscribed:
                continue
            if "SPECIAL-USE" in selection and not box.special_use:
                continue
            children = any(n.startswith(box.name + "/") for n in names)
            attributes = ["\\HasChildren" if children else "\\HasNoChildren"]
            if box.special_use and kind == "LIST":
                attributes.append(box.special_use)
            if box.subscribed and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection):
                attributes.append("\\Subscribed")
            self.emit(
                f'* {kind} ({" ".join(attributes)}) "/" '.encode() + self.encode_name(box.name)
            )

    async def cmd_status(self, tag: str, args: Args) -> str:
        name = self.mailbox_name(args)
        wanted = [as_text(t, "STATUS: bad item").upper() for t in args.list("status items")]
        args.end()
        box = await self.mailbox(name)
        messages: list[MessageInfo] | None = None
        values = []
        for item in wanted:
            if item == "MESSAGES":
                value = box.messages
            elif item == "UIDNEXT":
                value = box.uidnext
            elif item == "UIDVALIDITY":
                value = box.uidvalidity
            elif item == "UNSEEN":
                value = box.unseen
            elif item == "RECENT":
                value = 0
            elif item == "HIGHESTMODSEQ":
                self.condstore = True
                value = box.highestmodseq
            elif item in ("SIZE", "DELETED"):
                if messages is None:
                    messages = await self.stored(self.store.messages, box.id)
                if item == "SIZE":
                    value = sum(m.size for m in messages)
                else:
                    value = sum(1 for m in messages if "\\Deleted" in m.flags)
            else:
                raise ParseError(f"STATUS: unknown item {item}")
            values.append(f"{item} {value}")
        self.emit(b"* STATUS " + self.encode_name(name) + f" ({' '.join(values)})".encode())
        return "STATUS completed"

    async def cmd_create(self, tag: str, args: Args) -> str:
        name = self.new_mailbox_name(args)
        args.end()
        if name == "INBOX":
            raise no("[ALREADYEXISTS] INBOX always exists")
        existing = await self._names()
        if name in existing:
            raise no(f"[ALREADYEXISTS] mailbox {name!r} already exists")
        await self.stored(self._create_with_parents, name, existing)
        return "CREATE completed"

    async def _names(self) -> set[str]:
        return {box.name for box in await self.stored(self.store.mailboxes, self.address)}

    def _create_with_parents(self, name: str, existing: set[str]) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in existing:
                self.store.create_mailbox(self.address, path)

    async def cmd_delete(self, tag: str, args: Args) -> str:
        name = self.mailbox_name(args)
        args.end()
        if name == "INBOX":
            raise no("[CANNOT] INBOX cannot be deleted")
        box = await self.mailbox(name)
        if any(other.startswith(name + "/") for other in await self._names()):
            raise no(f"[INUSE] mailbox {name!r} has child mailboxes; delete them first")
        try:
            await self.stored(self.store.delete_mailbox, self.address, name)
        finally:  # even when the store did not answer: it may have deleted it
            self.server.mailboxes_changed(self.address, box.id)
        if self.selected is not None and self.selected.id == box.id:
            self._deselect()
        return "DELETE completed"

    async def cmd_rename(self, tag: str, args: Args) -> str:
        old = self.mailbox_name(args)
        new = self.new_mailbox_name(args)
        args.end()
        existing = await self._names()
        if old not in existing:
            raise no(f"[NONEXISTENT] no mailbox {old!r}")
        if new in existing or new == "INBOX":
            raise no(f"[ALREADYEXISTS] mailbox {new!r} already exists")
        if old != "INBOX" and new.startswith(old + "/"):  # INBOX's children stay where they are
            raise no(f"[CANNOT] {old!r} cannot be moved into its own subtree")
        parent = new.rpartition("/")[0]
        if parent and parent not in existing:
            await self.stored(self._create_with_parents, parent, existing)
        if old == "INBOX":
            inbox = await self.mailbox("INBOX")
            async with self.server.flag_lock(inbox.id):
                await self.stored(self._rename_inbox, inbox, new)
            self.server.changed(inbox.id)
        else:
            try:
                await self.stored(self.store.rename_mailbox, self.address, old, new)
            finally:
                self.server.mailboxes_changed(self.address)
        return "RENAME completed"

    def _rename_inbox(self, inbox: MailboxInfo, new: str) -> None:
        """RFC 3501 6.3.5: renaming INBOX moves its messages and leaves INBOX empty."""
        target = self.store.create_mailbox(self.address, new)
        uids = [m.uid for m in self.store.messages(inbox.id)]
        self.store.copy(inbox.id, uids, target.id)
        self.store.set_flags(inbox.id, uids, frozenset({"\\Deleted"}), "add")
        self.store.expunge(inbox.id, uids)

    async def cmd_subscribe(self, tag: str, args: Args) -> str:
        return await self._subscribe(args, True)

    async def cmd_unsubscribe(self, tag: str, args: Args) -> str:
        return await self._subscribe(args, False)

    async def _subscribe(self, args: Args, subscribed: bool) -> str:
        name = self.mailbox_name(args)
        args.end()
        try:
            await self.stored(self.store.set_subscribed, self.address, name, subscribed)
        except MailboxNotFound:
            raise no(f"[NONEXISTENT] no mailbox {name!r}") from None
        return ("SUBSCRIBE" if subscribed else "UNSUBSCRIBE") + " completed"

    async def cmd_select(self, tag: str, args: Args) -> str:
        return await self._select(args, readonly=False)

    async def cmd_examine(self, tag: str, args: Args) -> str:
        return await self._select(args, readonly=True)

    async def _select(self, args: Args, readonly: bool) -> str:
        name = self.mailbox_name(args)
        if isinstance(args.peek(), list):
            parameters = args.list("select parameters")
            if any(isinstance(p, Atom) and p.upper() == "CONDSTORE" for p in parameters):
                self.condstore = True
        args.end()
        if self.selected is not None:
            self.server.unwatch(self)
            self.selected = None
            self.state = AUTH
            self.emit(b"* OK [CLOSED] previous mailbox closed")
        epoch = self.server.mailbox_epoch(self.address)  # before: a delete meanwhile counts
        box = await self.mailbox(name)
        selected = await self.stored(Selected, self.store, box, readonly, epoch)
        self.emit(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        permanent = "" if readonly else "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*"
        self.emit(f"* OK [PERMANENTFLAGS ({permanent})] flags permitted".encode())
        self.emit(b"* %d EXISTS" % selected.exists)
        self.emit(b"* 0 RECENT")
        first_unseen = next(
            (
                i + 1
                for i, uid in enumerate(selected.uids)
                if "\\Seen" not in selected.info[uid].flags
            ),
            None,
        )
        if first_unseen is not None:
            self.emit(b"* OK [UNSEEN %d] first unseen message" % first_unseen)
        self.emit(b"* OK [UIDVALIDITY %d] UIDs valid" % box.uidvalidity)
        self.emit(b"* OK [UIDNEXT %d] predicted next UID" % box.uidnext)
        self.emit(b"* OK [HIGHESTMODSEQ %d] highest modseq" % box.highestmodseq)
        self.selected = selected
        self.state = SELECTED
        self.server.watch(self, box.id)
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        return f"[{mode}] {'EXAMINE' if readonly else 'SELECT'} completed"

    async def cmd_append(self, tag: str, args: Args) -> str:
        name = self.mailbox_name(args)
        flags: frozenset[str] = frozenset()
        internal_date = time.time()
        if isinstance(args.peek(), list):
            flags = self._flags(args.list("flag list"))
        if isinstance(args.peek(), bytes) and args.more() and args.pos + 1 < len(args.tokens):
            internal_date = parse_date_time(args.astring("date-time"))
        content = args.next("message literal")
        if not isinstance(content, bytes):
            raise ParseError("APPEND: the message must be a literal")
        args.end()
        if not content:
            raise no("APPEND: empty message")
        box = await self.mailbox(name, trycreate=True)
        planner = self.region.planner

        def deliver() -> int:
            delivery = planner.local_delivery(
                self.address, content, internal_date, mailbox=name, flags=flags
            )
            return self.store.deliver([delivery])[0][1]

        uid = await self.stored(deliver)
        self.server.changed(box.id)
        return f"[APPENDUID {box.uidvalidity} {uid}] APPEND completed"

    def _flags(self, tokens: list[Token]) -> frozenset[str]:
        flags = set()
        for token in tokens:
            if not isinstance(token, Atom):
                raise ParseError("expected flag names")
            flag = str(token)
            if flag.startswith("\\"):
                canonical = next((f for f in SYSTEM_FLAGS if f.lower() == flag.lower()), None)
                if canonical is None:
                    if flag.lower() == "\\recent":
                        continue
                    raise ParseError(f"unknown system flag {flag}")
                flag = canonical
            elif any(c in flag for c in "*%]"):
                raise ParseError(f"bad keyword {flag}")
            flags.add(flag)
        return frozenset(flags)

    async def cmd_idle(self, tag: str, args: Args) -> str:
        args.end()
        self.emit(b"+ idling")
        await self.flush()
        done = asyncio.ensure_future(self.readline())
        deadline = time.monotonic() + AUTOLOGOUT
        try:
            while not done.done():
                if time.monotonic() > deadline:
                    self.emit(b"* BYE Autologout; idle for too long")
                    self.closing = True
                    return "IDLE terminated by autologout"
                if self.selected is not None:
                    await self.check_selected()
                    with contextlib.suppress(Reply):  # the store is unavailable: next poll
                        await self._sync(allow_expunge=True)
                    await self.flush()
                wake = self.server.wake_event(self)
                waiter = asyncio.ensure_future(wake.wait())
                await asyncio.wait({done, waiter}, timeout=IDLE_POLL, return_when="FIRST_COMPLETED")
                waiter.cancel()
                wake.clear()
            line = done.result()
        finally:
            done.cancel()
        if line.strip().upper() != b"DONE":
            raise Reply("BAD", "IDLE: expected DONE")
        return "IDLE terminated"

    # selected state

    def _require_selected(self) -> Selected:
        assert self.selected is not None
        return self.selected

    def _require_writable(self) -> Selected:
        selected = self._require_selected()
        if selected.readonly:
            raise no("[READ-ONLY] the mailbox was opened with EXAMINE")
        return selected

    async def cmd_close(self, tag: str, args: Args) -> str:
        args.end()
        selected = self._require_selected()
        if not selected.readonly:
            await self.stored(self.store.expunge, selected.id)
            self.server.changed(selected.id)
        self._deselect()
        return "CLOSE completed"

    async def cmd_unselect(self, tag: str, args: Args) -> str:
        args.end()
        self._deselect()
        return "UNSELECT completed"

    def _deselect(self) -> None:
        self.server.unwatch(self)
        self.selected = None
        self.state = AUTH

    async def cmd_uid(self, tag: str, args: Args) -> str:
        sub = args.atom("UID command").upper()
        handlers = {
            "FETCH": self._fetch,
            "STORE": self._store,
            "COPY": self._copy,
            "MOVE": self._move,
            "SEARCH": self._search,
            "EXPUNGE": self._uid_expunge,
        }
        if sub not in handlers:
            raise ParseError(f"UID {sub}: not a UID command")
        args.what = f"UID {sub}"
        await self._sync(allow_expunge=True)  # so the responses use current sequence numbers
        text = await handlers[sub](args, True)
        if text.startswith("["):  # a response code stays first: "[COPYUID ...] UID COPY ..."
            code, _, rest = text.partition("] ")
            return f"{code}] UID {rest}"
        return "UID " + text

    async def cmd_expunge(self, tag: str, args: Args) -> str:
        args.end()
        selected = self._require_writable()
        removed = await self.stored(self.store.expunge, selected.id)
        self._removed(selected, removed)
        return "EXPUNGE completed"

    async def _uid_expunge(self, args: Args, by_uid: bool) -> str:
        numbers = SequenceSet.parse(args.atom("UID set"))
        args.end()
        selected = self._require_writable()
        uids = [m.uid for _, m in selected.resolve(numbers, by_uid=True)]
        removed = await self.stored(self.store.expunge, selected.id, uids) if uids else []
        self._removed(selected, removed)
        return "EXPUNGE completed"

    def _removed(self, selected: Selected, uids: list[int]) -> None:
        for line in selected.remove(uids):
            self.emit(line)
        if uids:
            self.server.changed(selected.id)

    async def cmd_fetch(self, tag: str, args: Args) -> str:
        return await self._fetch(args, False)

    async def _fetch(self, args: Args, by_uid: bool) -> str:
        selected = self._require_selected()
        numbers = SequenceSet.parse(args.atom("sequence set"))
        items = parse_items(args.next("data items"))
        changed_since = self._modifier(args, "CHANGEDSINCE")
        args.end()
        if by_uid and not any(item.kind == "UID" for item in items):
            items.insert(0, FetchItem("UID"))
        if changed_since is not None or any(item.kind == "MODSEQ" for item in items):
            self.condstore = True
        messages = selected.resolve(numbers, by_uid)
        if changed_since is not None:
            messages = [(seq, m) for seq, m in messages if m.modseq > changed_since]
        contents = await self.content() if any(i.needs_content for i in items) else None
        if not selected.readonly and any(item.sets_seen for item in items):
            unseen = [m.uid for _, m in messages if "\\Seen" not in m.flags]
            if unseen:
                await self._set_seen(selected, unseen, items)
                messages = [(seq, selected.info.get(m.uid, m)) for seq, m in messages]
        kinds = {item.kind for item in items}
        if (
            self.condstore
            and "MODSEQ" not in kinds
            and (changed_since is not None or "FLAGS" in kinds)
        ):
            items.append(FetchItem("MODSEQ"))  # RFC 7162 3.1.4.1, 3.2
        missing = 0
        for batch in _batches(messages):
            responses: list[list[bytes] | None]
            if contents is None:
                responses = [fetch_response(seq, info, items, None, {}) for seq, info in batch]
            else:
                contents.trim(len(batch))
                wanted = [info.blob_id for _, info in batch if contents.wants(info, items)]
                blobs = await self.stored(read_blobs, self.store, wanted) if wanted else {}
                responses = await self.work(contents.responses, batch, items, blobs)
            for chunks in responses:
                if chunks is None:
                    missing += 1  # expunged by another session, not yet announced here
                else:
                    self.emit_chunks(chunks)
            await self.flush_if_full()
        if missing:
            raise no(f"{missing} of the messages were expunged meanwhile")
        return "FETCH completed"

    async def _set_seen(self, selected: Selected, uids: list[int], items: list[FetchItem]) -> None:
        async with self.server.flag_lock(selected.id):
            changed = await self.stored(
                self.store.set_flags, selected.id, uids, frozenset({"\\Seen"}), "add"
            )
        selected.update(changed)
        if not any(item.kind == "FLAGS" for item in items):
            items.append(FetchItem("FLAGS"))
        self.server.changed(selected.id)

    async def cmd_store(self, tag: str, args: Args) -> str:
        return await self._store(args, False)

    async def _store(self, args: Args, by_uid: bool) -> str:
        selected = self._require_writable()
        numbers = SequenceSet.parse(args.atom("sequence set"))
        unchanged_since = self._modifier(args, "UNCHANGEDSINCE")
        if unchanged_since is not None:
            self.condstore = True
        action = args.atom("FLAGS, +FLAGS or -FLAGS").upper()
        match = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", action)
        if match is None:
            raise ParseError(f"STORE: unknown item {action}")
        rest = args.tokens[args.pos :]
        args.pos = len(args.tokens)
        tokens = rest[0] if len(rest) == 1 and isinstance(rest[0], list) else rest
        flags = self._flags(tokens)
        mode = {"": "set", "+": "add", "-": "remove"}[match[1]]
        messages = selected.resolve(numbers, by_uid)
        modified: list[int] = []
        async with self.server.flag_lock(selected.id):
            if unchanged_since is not None:
                # Checked against the store, not this session's view, under the lock every
                # flag writer of this mailbox takes: no write can slip in between.
                stored = await self.stored(self.store.messages, selected.id)
                current = {m.uid: m.modseq for m in stored}
                late = {m.uid for _, m in messages if current.get(m.uid, 0) > unchanged_since}
                modified = [m.uid if by_uid else seq for seq, m in messages if m.uid in late]
                messages = [(seq, m) for seq, m in messages if m.uid not in late]
            uids = [m.uid for _, m in messages]
            changed = await self.stored(self.store.set_flags, selected.id, uids, flags, mode)
        selected.update(changed)
        if changed:
            self.server.changed(selected.id)
        if not match[2] or (self.condstore and changed):
            touched = {m.uid for m in changed}
            for seq, message in messages:
                info = selected.info.get(message.uid)
                if info is None or (match[2] and info.uid not in touched):
                    continue
                items = [b"UID %d" % info.uid] if by_uid else []
                if not match[2]:  # .SILENT with CONDSTORE: only the new MODSEQ (RFC 7162 3.2)
                    items.append(b"FLAGS " + flag_list(info.flags))
                if self.condstore:
                    items.append(b"MODSEQ (%d)" % info.modseq)
                self.emit(b"* %d FETCH (%s)" % (seq, b" ".join(items)))
        if modified:
            return f"[MODIFIED {uid_set_text(sorted(modified))}] STORE completed"
        return "STORE completed"

    def _modifier(self, args: Args, name: str) -> int | None:
        """A `(NAME n)` modifier list after the sequence set (RFC 7162)."""
        if not isinstance(args.peek(), list):
            return None
        modifiers = args.list(f"{name} modifier")
        if (
            len(modifiers) != 2
            or not isinstance(modifiers[0], Atom)
            or modifiers[0].upper() != name
            or not isinstance(modifiers[1], Atom)
            or not is_number(modifiers[1])
        ):
            raise ParseError(f"{args.what}: expected ({name} mod-sequence)")
        return int(modifiers[1])

    async def cmd_copy(self, tag: str, args: Args) -> str:
        return await self._copy(args, False)

    async def _copy(self, args: Args, by_uid: bool) -> str:
        code = await self._copy_messages(args, by_uid)
        return f"{code}COPY completed"

    async def _copy_messages(self, args: Args, by_uid: bool) -> str:
        selected = self._require_selected()
        numbers = SequenceSet.parse(args.atom("sequence set"))
        dest = await self.mailbox(self.mailbox_name(args), trycreate=True)
        args.end()
        uids = [m.uid for _, m in selected.resolve(numbers, by_uid)]
        if not uids:
            return ""
        mapping = await self.stored(self.store.copy, selected.id, uids, dest.id)
        self.server.changed(dest.id)
        if not mapping:
            return ""
        return (
            f"[COPYUID {dest.uidvalidity} {uid_set_text([a for a, _ in mapping])}"
            f" {uid_set_text([b for _, b in mapping])}] "
        )

    async def cmd_move(self, tag: str, args: Args) -> str:
        return await self._move(args, False)

    async def _move(self, args: Args, by_uid: bool) -> str:
        """RFC 6851: copy, then expunge the originals, announcing COPYUID untagged."""
        selected = self._require_writable()
        position = args.pos
        numbers = SequenceSet.parse(args.atom("sequence set"))
        uids = [m.uid for _, m in selected.resolve(numbers, by_uid)]
        args.pos = position
        code = await self._copy_messages(args, by_uid)
        if code:
            self.emit(f"* OK {code.strip()}".encode())
        if uids:
            async with self.server.flag_lock(selected.id):
                removed = await self.stored(self._expunge_uids, selected.id, uids)
            self._removed(selected, removed)
        return "MOVE completed"

    def _expunge_uids(self, mailbox_id: int, uids: list[int]) -> list[int]:
        self.store.set_flags(mailbox_id, uids, frozenset({"\\Deleted"}), "add")
        return self.store.expunge(mailbox_id, uids)

    async def cmd_search(self, tag: str, args: Args) -> str:
        return await self._search(args, False)

    async def _search(self, args: Args, by_uid: bool) -> str:
        selected = self._require_selected()
        if isinstance(args.peek(), Atom) and str(args.peek()).upper() == "RETURN":
            raise no("SEARCH RETURN (ESEARCH) is not supported")
        try:
            parsed = parse_search(args.tokens[args.pos :])
        except BadCharset as exc:
            raise no(f"[BADCHARSET (UTF-8 US-ASCII)] charset {exc} is not supported") from None
        contents = await self.content() if parsed.needs_content else None
        self.condstore |= parsed.uses_modseq
        match = functools.partial(
            _matches, parsed.predicate, selected.exists, selected.largest_uid, contents
        )
        candidates = [(index + 1, selected.info[uid]) for index, uid in enumerate(selected.uids)]
        # Messages whose answer depends on their content are read in a second round, so
        # `UNSEEN BODY x` decrypts only the unseen ones.
        found, undecided = await self.work(match, candidates, {})
        for batch in _batches(undecided):
            blobs = await self.stored(read_blobs, self.store, [i.blob_id for _, i in batch])
            found += (await self.work(match, batch, blobs))[0]
        found.sort(key=lambda hit: hit[0])
        hits = [info.uid if by_uid else seq for seq, info in found]
        highest = max((info.modseq for _, info in found), default=0)
        line = ("* SEARCH " + " ".join(map(str, hits))).rstrip()
        if parsed.uses_modseq and hits:
            line += f" (MODSEQ {highest})"  # RFC 7162 3.1.5
        self.emit(line.encode())
        return "SEARCH completed"


Batch = list[tuple[int, MessageInfo]]


def _batches(messages: Batch) -> Iterator[Batch]:
    """(seq, message) pairs in runs of BATCH_MESSAGES, or fewer up to BATCH_OCTETS."""
    batch: Batch = []
    octets = 0
    for item in messages:
        if batch and (len(batch) >= BATCH_MESSAGES or octets + item[1].size > BATCH_OCTETS):
            yield batch
            batch, octets = [], 0
        batch.append(item)
        octets += item[1].size
    if batch:
        yield batch


def _matches(
    predicate: Predicate,
    largest_seq: int,
    largest_uid: int,
    contents: Contents | None,
    candidates: Batch,
    blobs: Mapping[int, bytes],
) -> tuple[Batch, Batch]:
    """SEARCH over candidates (work thread): those that match, and those whose content was
    needed but is not in `blobs` (nor cached)."""
    found: Batch = []
    undecided: Batch = []
    for seq, info in candidates:
        part = _part_getter(contents, info, blobs)
        try:
            if predicate(Candidate(seq, info, largest_seq, largest_uid, part)):
                found.append((seq, info))
        except Vanished:
            undecided.append((seq, info))
    return found, undecided


def _part_getter(
    contents: Contents | None, info: MessageInfo, blobs: Mapping[int, bytes]
) -> Callable[[], Part]:
    def get() -> Part:
        assert contents is not None, "the parser asked for content, so the key was released"
        return contents.part(info, blobs)

    return get


def _one_or_list(token: Token) -> list[Token]:
    return token if isinstance(token, list) else [token]
