"""Commands before login (RFC 9051 6.2): STARTTLS, LOGIN, AUTHENTICATE PLAIN; referrals to
an account's home region (RFC 2221) and the login throttle."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from borderline import observe
from borderline.imap.commands.base import Command, Request
from borderline.imap.replies import bad, no
from borderline.imap.state import Account, Authenticated, NotAuthenticated

if TYPE_CHECKING:
    from borderline.imap.session import Session

FAILED_LOGIN = "[AUTHENTICATIONFAILED] invalid user name or password"
NOT_AUTHENTICATED = (NotAuthenticated,)


async def starttls(session: Session, state: NotAuthenticated, request: Request) -> str:
    request.args.end()
    if session.tls or session.server.tls is None:
        raise bad("STARTTLS: TLS is already active or not offered here")
    session.after_reply = session.start_tls
    return "Begin TLS negotiation now"


async def login(session: Session, state: NotAuthenticated, request: Request) -> str:
    args = request.args
    user = args.astring("user name")
    password = args.astring("password")
    args.end()
    return await _login(session, user, password)


async def authenticate(session: Session, state: NotAuthenticated, request: Request) -> str:
    args = request.args
    mechanism = args.atom("SASL mechanism").upper()
    initial = args.raw("initial response") if args.more() else None
    args.end()
    if mechanism != "PLAIN":
        raise no(f"AUTHENTICATE: mechanism {mechanism} is not supported (use PLAIN)")
    if initial is None:
        session.emit(b"+ ")
        await session.flush()
        initial = (await session.readline()).rstrip(b"\r\n")
    if initial == b"*":
        raise bad("AUTHENTICATE cancelled")
    try:
        decoded = b"" if initial == b"=" else base64.b64decode(initial, validate=True)
        authzid, authcid, password = decoded.split(b"\0")
    except (binascii.Error, ValueError):
        raise bad("AUTHENTICATE: malformed PLAIN response") from None
    user = authcid.decode("utf-8", "replace")
    if authzid and authzid.decode("utf-8", "replace").lower() != user.lower():
        raise no("[AUTHORIZATIONFAILED] authorization identity must be the user")
    return await _login(session, user, password.decode("utf-8", "replace"))


async def _login(session: Session, user: str, password: str) -> str:
    if not session.plaintext_allowed():
        raise no("[PRIVACYREQUIRED] use STARTTLS or the implicit TLS port first")
    address = user.strip().lower()
    server, region, ip = session.server, session.region, session.ip
    # Before the password is checked: an account deleted meanwhile (its address maybe given
    # to a new owner) must not be logged into with the password it had.
    generation = server.account_generation(address)
    throttle = server.throttle
    if throttle.locked(address, ip):
        observe.login(region.id, "imap", "locked", address=address, ip=ip)
        raise no("[UNAVAILABLE] too many failed logins; try again later")
    home = await session.stored(region.directory.home, address) if "@" in address else None
    if home is not None and home != region.id:
        # Refer only once the home region says the password is right: a referral names
        # the home region, so it must tell nothing to a guesser (who gets exactly the
        # reply, delay and throttling of an unknown account).
        vault = region.vault
        referred = await session.guesses.attempt(
            lambda: server.peers.password_is_right(vault, home, address, password, ip),
            address,
            ip,
            password,
            local=server.peers.served_here(home) is not None,  # then argon2 runs here
        )
        result: observe.LoginResult = "referred" if referred else "failed"
        observe.login(region.id, "imap", result, address=address, ip=ip)
        if referred:
            raise no(server.referral(address, home))
        raise no(FAILED_LOGIN)
    ok = await session.guesses.attempt(
        lambda: region.check_password(address, password) and home == region.id,
        address,
        ip,
        password,
    )
    ok = ok and server.account_generation(address) == generation
    observe.login(region.id, "imap", "ok" if ok else "failed", address=address, ip=ip)
    if not ok:
        raise no(FAILED_LOGIN)
    session.state = Authenticated(Account(address, generation))
    return f"[CAPABILITY {session.capabilities()}] logged in"


COMMANDS: dict[str, Command[NotAuthenticated]] = {
    "STARTTLS": Command(starttls, NOT_AUTHENTICATED),
    "LOGIN": Command(login, NOT_AUTHENTICATED),
    "AUTHENTICATE": Command(authenticate, NOT_AUTHENTICATED),
}
