"""Where and how outbound mail for a domain goes: MX resolution (RFC 5321 section 5.1, null
MX per RFC 7505, IDNA) and MTA-STS (RFC 8461: the `_mta-sts` TXT record, the policy fetched
over validated HTTPS, a durable cache that honours max_age, MX pattern matching), ending in
one decision per MX host: validated TLS required, opportunistic TLS, or not to be used.

DNS goes through the dnspython async resolver the caller passes in (the region's; a test
points it at its own server). Everything a remote domain controls is bounded: MX hosts and
addresses considered, time per query and per resolution, policy size, and which addresses
may be connected to at all (no loopback or private address unless the caller allows it).

DANE (RFC 7672) is not done here yet: it needs DNSSEC-validated TLSA answers (a validating
resolver's AD bit) and matching against the peer's chain, which Python 3.11's ssl module does
not expose beyond the leaf; see docs/internet-mail.md."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import httpx

from borderline.domains import ascii_domain
from borderline.durable_sqlite import open_durable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 section 3.3 lets senders bound the policy size
MAX_MAX_AGE = 31_557_600  # section 3.2: at most a year


class RouteError(Exception):
    """No route now. `permanent` means retrying cannot help (a bounce), else defer;
    `status` is the RFC 3463 code a delivery report gives it."""

    def __init__(self, message: str, *, permanent: bool, status: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        # X.4.4 "unable to route" unless the cause has a code of its own.
        self.status = status or ("5.4.4" if permanent else "4.4.3")


def public_address(address: IpAddress) -> bool:
    """The default address filter: only globally routable unicast addresses, so a hostile
    domain cannot point our MTA (or our policy fetcher) at loopback or an internal network."""
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class RouteLimits:
    max_mx_hosts: int = 10
    max_addresses_per_host: int = 8
    query_timeout: float = 5.0
    resolution_timeout: float = 30.0  # every query of one domain's MX resolution together
    policy_fetch_timeout: float = 20.0


@dataclass(frozen=True)
class MxHost:
    name: str  # A-label, lower case, no final dot
    preference: int
    addresses: tuple[str, ...]  # in the order to try: IPv6 first, then IPv4
    implicit: bool = False  # no MX record: the domain itself (RFC 5321 5.1)


def to_ascii_domain(domain: str) -> str:
    """The A-label form of a mail domain, or a permanent RouteError."""
    ascii_name = ascii_domain(domain)
    if ascii_name is None:
        raise RouteError(f"{domain!r} is not a valid domain name", permanent=True, status="5.1.2")
    return ascii_name


async def resolve_mx(
    domain: str,
    resolver: dns.asyncresolver.Resolver,
    *,
    limits: RouteLimits | None = None,
    allowed: Callable[[IpAddress], bool] = public_address,
) -> list[MxHost]:
    """The hosts to try for `domain`, most preferred first (equal preferences shuffled, RFC
    5321 5.1), each with the addresses it may be reached at. RouteError when there is none."""
    limits = limits or RouteLimits()
    name = to_ascii_domain(domain)
    try:
        async with asyncio.timeout(limits.resolution_timeout):
            return await _resolve_mx(name, resolver, limits, allowed)
    except TimeoutError as error:
        raise RouteError(
            f"resolving {name} took over {limits.resolution_timeout:.0f}s", permanent=False
        ) from error


async def _resolve_mx(
    domain: str,
    resolver: dns.asyncresolver.Resolver,
    limits: RouteLimits,
    allowed: Callable[[IpAddress], bool],
) -> list[MxHost]:
    answer = await _query(resolver, domain, "MX", limits)
    if answer is _NXDOMAIN:
        raise RouteError(f"{domain} does not exist (NXDOMAIN)", permanent=True, status="5.1.2")
    if answer is _NODATA:
        addresses, _ = await _addresses(resolver, domain, limits, allowed)
        if not addresses:
            raise RouteError(f"{domain} has no MX and no address", permanent=True)
        return [MxHost(domain, 0, addresses, implicit=True)]
    records = sorted(
        ((r.preference, r.exchange) for r in answer),  # type: ignore[union-attr]
        key=lambda record: (record[0], random.random()),
    )
    if any(exchange == dns.name.root for _, exchange in records):
        raise RouteError(
            f"{domain} accepts no mail (null MX, RFC 7505)", permanent=True, status="5.1.10"
        )
    hosts = []
    temporary = []
    for preference, exchange in records[: limits.max_mx_hosts]:
        host = exchange.to_text(omit_final_dot=True).lower()
        addresses, problem = await _addresses(resolver, host, limits, allowed)
        if addresses:
            hosts.append(MxHost(host, preference, addresses))
        elif problem:
            temporary.append(problem)
    if hosts:
        return hosts
    if temporary:
        raise RouteError(
            f"no MX host of {domain} resolved: {'; '.join(temporary)}", permanent=False
        )
    raise RouteError(f"no MX host of {domain} has a usable address", permanent=True)


class _Missing(enum.Enum):
    NXDOMAIN = "NXDOMAIN"
    NODATA = "NODATA"


_NXDOMAIN, _NODATA = _Missing.NXDOMAIN, _Missing.NODATA


async def _query(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str, limits: RouteLimits
) -> dns.resolver.Answer | _Missing:
    try:
        return await resolver.resolve(name, rdtype, search=False, lifetime=limits.query_timeout)
    except dns.resolver.NXDOMAIN:
        return _NXDOMAIN
    except dns.resolver.NoAnswer:
        return _NODATA
    except dns.exception.DNSException as error:
        raise RouteError(
            f"DNS {rdtype} lookup of {name} failed: {type(error).__name__}", permanent=False
        ) from error


async def _addresses(
    resolver: dns.asyncresolver.Resolver,
    host: str,
    limits: RouteLimits,
    allowed: Callable[[IpAddress], bool],
) -> tuple[tuple[str, ...], str]:
    """(the usable addresses of `host`, a temporary problem if one got in the way)."""
    found: list[str] = []
    problems: list[str] = []
    answers = await asyncio.gather(
        *(_query(resolver, host, rdtype, limits) for rdtype in ("AAAA", "A")),
        return_exceptions=True,
    )
    for answer in answers:
        if isinstance(answer, RouteError):
            problems.append(str(answer))
        elif isinstance(answer, BaseException):
            raise answer
        elif not isinstance(answer, _Missing):
            for rdata in answer:
                address = ipaddress.ip_address(rdata.address)
                if allowed(address):
                    found.append(str(address))
    return tuple(found[: limits.max_addresses_per_host]), "; ".join(problems)


# --- MTA-STS ---------------------------------------------------------------------------------


class StsMode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class StsPolicy:
    mode: StsMode
    mx: tuple[str, ...]  # patterns: "mx.example.com" or "*.example.com"
    max_age: int
    policy_id: str  # the id of the TXT record it was fetched for
    fetched_at: float

    def expired(self, now: float) -> bool:
        return now >= self.fetched_at + self.max_age

    def matches(self, host: str) -> bool:
        """RFC 8461 section 4.1: a pattern matches the host, or "*." any one leftmost label."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, rest = host.partition(".")
                if dot and label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


class PolicyError(ValueError):
    """A policy file that does not parse as RFC 8461 section 3.2 requires."""


def parse_policy(text: str, policy_id: str, fetched_at: float) -> StsPolicy:
    fields: dict[str, list[str]] = {}
    for line in re.split(r"\r?\n", text):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"not a key: value line: {line[:80]!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("version must be STSv1")
    try:
        mode = StsMode(fields.get("mode", [""])[0].lower())
    except ValueError as error:
        raise PolicyError("mode must be enforce, testing or none") from error
    age = fields.get("max_age", [""])[0]
    if not age.isdigit() or len(age) > 10:
        raise PolicyError("max_age must be a number of seconds")
    patterns = tuple(p.lower().rstrip(".") for p in fields.get("mx", []))
    if mode is not StsMode.NONE and not patterns:
        raise PolicyError("an enforce or testing policy needs mx lines")
    for pattern in patterns:
        to_ascii_domain(pattern[2:] if pattern.startswith("*.") else pattern)
    return StsPolicy(mode, patterns, min(int(age), MAX_MAX_AGE), policy_id, fetched_at)


class TlsRequirement(enum.Enum):
    VALIDATED = "validated"  # STARTTLS, a certificate valid for the MX name, or do not send
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered, any certificate
    MAY_NOT_USE = "may not use"  # MTA-STS enforce: this MX is not in the policy


@dataclass(frozen=True)
class Hop:
    mx: MxHost
    tls: TlsRequirement
    reason: str = ""


def decide(policy: StsPolicy | None, host: MxHost) -> Hop:
    """The TLS this MX must be reached with under the domain's policy (RFC 8461 4.2, 5)."""
    if policy is None or policy.mode is StsMode.NONE:
        return Hop(host, TlsRequirement.OPPORTUNISTIC)
    if policy.mode is StsMode.TESTING:
        # Delivered as without a policy; a failure is only reported (TLS-RPT, RFC 8460).
        return Hop(host, TlsRequirement.OPPORTUNISTIC, "MTA-STS testing")
    if not policy.matches(host.name):
        return Hop(host, TlsRequirement.MAY_NOT_USE, f"{host.name} is not in the MTA-STS policy")
    return Hop(host, TlsRequirement.VALIDATED, "MTA-STS enforce")


def tls_context(requirement: TlsRequirement, ca_file: Path | None = None) -> ssl.SSLContext:
    """The client context for STARTTLS to a hop: the MX host name is then given as
    server_hostname, so a VALIDATED context checks the certificate is for it."""
    if requirement is TlsRequirement.VALIDATED:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    else:  # nothing is checked, so no CA store to load
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _policy_id(records: Sequence[bytes]) -> str | None:
    """The id of the one `v=STSv1` TXT record (section 3.1), or None for none or several."""
    found = [r for r in records if re.match(rb"v=STSv1\s*(;|$)", r)]
    if len(found) != 1:
        return None
    for part in found[0].decode("ascii", "replace").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "id" and re.fullmatch(r"[A-Za-z0-9]{1,32}", value):
            return value
    return None


class MtaSts:
    """Policies for the domains we send to, fetched when the TXT id changes, kept in an
    SQLite file under `cache_dir` for as long as their max_age says (section 5.1): a policy
    seen once keeps protecting the domain even when an attacker hides its TXT record."""

    def __init__(
        self,
        cache_dir: Path,
        resolver: dns.asyncresolver.Resolver,
        *,
        https_port: int = 443,
        ca_file: Path | None = None,
        limits: RouteLimits | None = None,
        allowed: Callable[[IpAddress], bool] = public_address,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.https_port = https_port
        self.ca_file = ca_file
        self.limits = limits or RouteLimits()
        self.allowed = allowed
        self.clock = clock
        self.db = open_durable(cache_dir / "mta-sts.sqlite")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS policy (domain TEXT PRIMARY KEY, id TEXT NOT NULL,"
            " mode TEXT NOT NULL, mx TEXT NOT NULL, max_age INTEGER NOT NULL,"
            " fetched_at REAL NOT NULL)"
        )
        self.db.commit()
        self.fetches = 0  # policy downloads attempted, for the tests and the logs

    def close(self) -> None:
        self.db.close()

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy in force for `domain` now, or None (deliver as without MTA-STS)."""
        name = to_ascii_domain(domain)
        now = self.clock()
        cached = self.cached(name)
        if cached is not None and cached.expired(now):
            cached = None
        try:
            answer = await _query(self.resolver, f"_mta-sts.{name}", "TXT", self.limits)
        except RouteError:
            return cached  # a DNS failure never lowers the protection already known
        records = [] if isinstance(answer, _Missing) else [b"".join(r.strings) for r in answer]
        policy_id = _policy_id(records)
        if policy_id is None or (cached is not None and cached.policy_id == policy_id):
            return cached
        fetched = await self._fetch(name, policy_id, now)
        if fetched is None:
            return cached
        self._store(name, fetched)
        return fetched

    def cached(self, domain: str) -> StsPolicy | None:
        row = self.db.execute(
            "SELECT mode, mx, max_age, id, fetched_at FROM policy WHERE domain = ?", (domain,)
        ).fetchone()
        if row is None:
            return None
        mode, mx, max_age, policy_id, fetched_at = row
        return StsPolicy(
            StsMode(mode), tuple(filter(None, mx.split(" "))), max_age, policy_id, fetched_at
        )

    def _store(self, domain: str, policy: StsPolicy) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO policy VALUES (?, ?, ?, ?, ?, ?)",
                (
                    domain,
                    policy.policy_id,
                    policy.mode.value,
                    " ".join(policy.mx),
                    policy.max_age,
                    policy.fetched_at,
                ),
            )

    async def _fetch(self, domain: str, policy_id: str, now: float) -> StsPolicy | None:
        """The policy from https://mta-sts.<domain>/.well-known/mta-sts.txt, or None when it
        cannot be had (section 3.3: valid certificate, 200, text/plain, no redirects)."""
        self.fetches += 1
        host = f"mta-sts.{domain}"
        try:
            async with asyncio.timeout(self.limits.policy_fetch_timeout):
                addresses, _ = await _addresses(self.resolver, host, self.limits, self.allowed)
                for address in addresses:
                    text = await self._download(host, address)
                    if text is not None:
                        return parse_policy(text, policy_id, now)
        except (TimeoutError, PolicyError, RouteError):
            return None
        return None

    async def _download(self, host: str, address: str) -> str | None:
        context = tls_context(TlsRequirement.VALIDATED, self.ca_file)
        literal = f"[{address}]" if ":" in address else address
        url = f"https://{literal}:{self.https_port}{POLICY_PATH}"
        try:
            async with (
                httpx.AsyncClient(
                    verify=context, follow_redirects=False, trust_env=False
                ) as client,
                client.stream(
                    "GET",
                    url,
                    headers={"Host": host},
                    extensions={"sni_hostname": host},
                ) as response,
            ):
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200 or not content_type.lower().startswith("text/plain"):
                    return None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_POLICY_BYTES:
                        return None
        except (httpx.HTTPError, ssl.SSLError, OSError):
            return None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True)
class Route:
    domain: str
    hops: tuple[Hop, ...]  # the MX hosts to try, in order, each with its TLS requirement
    refused: tuple[Hop, ...]  # MX hosts the policy forbids, for the log and TLS-RPT
    policy: StsPolicy | None


async def plan(
    domain: str,
    resolver: dns.asyncresolver.Resolver,
    mta_sts: MtaSts,
    *,
    limits: RouteLimits | None = None,
    allowed: Callable[[IpAddress], bool] = public_address,
) -> Route:
    """MX hosts and MTA-STS together. Under an enforce policy that no MX matches, the
    failure is temporary (section 5.1: the policy may be updated before the retry)."""
    hosts = await resolve_mx(domain, resolver, limits=limits, allowed=allowed)
    policy = await mta_sts.policy(domain)
    decided = [decide(policy, host) for host in hosts]
    hops = tuple(h for h in decided if h.tls is not TlsRequirement.MAY_NOT_USE)
    refused = tuple(h for h in decided if h.tls is TlsRequirement.MAY_NOT_USE)
    if not hops:
        raise RouteError(
            f"no MX host of {domain} is allowed by its MTA-STS policy",
            permanent=False,
            status="4.7.5",
        )
    return Route(to_ascii_domain(domain), hops, refused, policy)
