"""Inbound sender authentication: SPF (RFC 7208), DKIM (RFC 6376), DMARC with alignment
(RFC 7489) and ARC (RFC 8617), summed up as one result, a DMARC disposition and an
`Authentication-Results` header (RFC 8601).

The cryptography and the SPF language are the libraries' (dkimpy for DKIM and ARC, pyspf
for SPF). Written here: DMARC record discovery and alignment (authheaders, the one library
that does it, mangles From domains with a hyphen and checks only the first DKIM signature),
the header (authres passes any value containing "@" through unquoted, so a hostile MAIL
FROM could add results of its own), and the limits on what a hostile sender controls: the
header section's size and field count, how many signatures are checked, and every DNS query
of one evaluation, counted and under one deadline.

No network of its own: every query goes to the resolver the caller passes in. Blocking;
an asyncio caller runs `authenticate` in a thread."""

from __future__ import annotations

import contextvars
import enum
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import errors, policy
from typing import Any

import dkim
import dns.exception
import dns.name
import dns.resolver
import spf
from publicsuffixlist import PublicSuffixList

from borderline.domains import ascii_domain

_PUBLIC_SUFFIXES = PublicSuffixList()
_MAX_FROM_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on one evaluation; the defaults are generous for real mail."""

    max_header_bytes: int = 256 * 1024
    max_header_fields: int = 1000
    max_dkim_signatures: int = 5  # more are reported as not checked
    max_arc_sets: int = 50  # RFC 8617 section 4.2.1: i= runs from 1 to 50
    max_dns_queries: int = 40  # SPF's own limits (10 lookups, 2 void) apply within these
    dns_timeout: float = 5.0  # one query
    total_dns_time: float = 20.0  # every query of one evaluation together


class Disposition(enum.Enum):
    """What the receiver does with the message (RFC 7489 section 6.3 `p`)."""

    ACCEPT = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass fail softfail neutral none temperror permerror
    identity: str  # the MAIL FROM address, or postmaster@HELO for the null sender
    scope: str  # "mailfrom" or "helo"
    reason: str = ""

    @property
    def domain(self) -> str:
        return _domain_of(self.identity)


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass fail neutral temperror permerror
    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    signature: str = ""  # the first characters of b=, to tell signatures apart
    reason: str = ""


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass fail none temperror permerror
    from_domain: str = ""
    policy: Disposition = Disposition.ACCEPT  # the published policy that applies (p or sp)
    aligned: str = ""  # "spf", "dkim", "spf dkim" or "" (what made it pass)
    reason: str = ""


@dataclass(frozen=True)
class ArcResult:
    result: str  # none pass fail
    sets: int = 0
    sealer: str = ""  # d= of the newest ARC-Seal
    reason: str = ""


@dataclass(frozen=True)
class AuthenticationResult:
    spf: SpfResult
    dkim: tuple[DkimResult, ...]
    dmarc: DmarcResult
    arc: ArcResult
    disposition: Disposition
    disposition_reason: str = ""
    dns_queries: int = 0

    def header(self, authserv_id: str) -> str:
        """The `Authentication-Results:` field with CRLF, to prepend to the message."""
        clauses = [_clause("spf", self.spf.result, self.spf.reason, _spf_properties(self.spf))]
        clauses += [_clause("dkim", d.result, d.reason, _dkim_properties(d)) for d in self.dkim]
        if not self.dkim:
            clauses.append("dkim=none")
        clauses.append(_clause("dmarc", self.dmarc.result, self.dmarc.reason, _dmarc_props(self)))
        clauses.append(_clause("arc", self.arc.result, self.arc.reason, []))
        return "Authentication-Results: " + ";\r\n\t".join([_value(authserv_id), *clauses]) + "\r\n"


def authenticate(
    message: bytes,
    *,
    ip: str,
    mail_from: str,
    helo: str,
    resolver: dns.resolver.Resolver,
    limits: Limits | None = None,
    trusted_arc_sealers: frozenset[str] = frozenset(),
) -> AuthenticationResult:
    """Authenticate one received message. `mail_from` is the envelope sender ("" for the
    null sender). A DMARC failure is forgiven only when the ARC chain passes and its newest
    seal is from one of `trusted_arc_sealers` (RFC 8617 section 7.2, a local policy)."""
    limits = limits or Limits()
    budget = _DnsBudget(resolver, limits)
    header_problem = _header_problem(message, limits)
    spf_result = _check_spf(ip, mail_from, helo, budget)
    if header_problem:
        dkim_results: tuple[DkimResult, ...] = (DkimResult("permerror", reason=header_problem),)
        arc_result = ArcResult("fail", reason=header_problem)
    else:
        dkim_results = _check_dkim(message, budget, limits)
        arc_result = _check_arc(message, budget, limits)
    dmarc_result = _check_dmarc(message, spf_result, dkim_results, budget, header_problem)
    disposition, why = _disposition(dmarc_result, arc_result, trusted_arc_sealers)
    return AuthenticationResult(
        spf_result, dkim_results, dmarc_result, arc_result, disposition, why, budget.queries
    )


def strip_forged_results(message: bytes, authserv_id: str) -> bytes:
    """Drop `Authentication-Results` fields that claim to be from `authserv_id` (RFC 8601
    section 5: a sender must not be able to forge our verdict)."""
    headers, body = _split(message)
    kept = [raw for name, raw in _fields(headers) if not _is_ours(name, raw, authserv_id.lower())]
    return b"".join(kept) + body


# --- DNS: one budget per evaluation ---------------------------------------------------------


class _DnsTemporaryError(Exception):
    """A query timed out, failed at the server, or the evaluation's budget is spent."""


class _DnsBudget:
    def __init__(self, resolver: dns.resolver.Resolver, limits: Limits) -> None:
        self.resolver = resolver
        self.limits = limits
        self.deadline = time.monotonic() + limits.total_dns_time
        self.queries = 0

    def resolve(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """The answer, or None when the name or the type does not exist."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _DnsTemporaryError("DNS time for this message is spent")
        if self.queries >= self.limits.max_dns_queries:
            raise _DnsTemporaryError(f"over {self.limits.max_dns_queries} DNS queries")
        self.queries += 1
        try:
            return self.resolver.resolve(
                name, rdtype, search=False, lifetime=min(self.limits.dns_timeout, remaining)
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.name.LabelTooLong, dns.name.NameTooLong, dns.name.EmptyLabel):
            return None
        except dns.exception.DNSException as error:
            raise _DnsTemporaryError(f"{type(error).__name__} for {name}") from error

    def txt(self, name: str) -> list[bytes]:
        answer = self.resolve(name, "TXT")
        return [b"".join(rdata.strings) for rdata in answer] if answer else []


# --- SPF (pyspf) ------------------------------------------------------------------------------

# pyspf looks every query up through its module-level `DNSLookup`; pointed once at the
# budget of the evaluation running in this context, so concurrent evaluations never mix.
_spf_budget: contextvars.ContextVar[_DnsBudget] = contextvars.ContextVar("spf_budget")
_library_lookup: Callable[..., list[Any]] = spf.DNSLookup


def _spf_lookup(name: str, qtype: str, strict: Any = True, timeout: Any = None) -> list[Any]:
    try:
        budget = _spf_budget.get()
    except LookupError:
        return _library_lookup(name, qtype, strict, timeout)
    try:
        answer = budget.resolve(name, qtype)
    except _DnsTemporaryError as error:
        raise spf.TempError(f"DNS {error}") from error
    if answer is None:
        return []
    key = (name, qtype)
    if qtype in ("A", "AAAA"):
        return [(key, rdata.address) for rdata in answer]
    if qtype == "MX":
        return [(key, (r.preference, r.exchange)) for r in answer]
    if qtype == "PTR":
        return [(key, rdata.target.to_text(True)) for rdata in answer]
    return [(key, rdata.strings) for rdata in answer]


spf.DNSLookup = _spf_lookup


def _check_spf(ip: str, mail_from: str, helo: str, budget: _DnsBudget) -> SpfResult:
    scope = "mailfrom" if mail_from else "helo"
    identity = mail_from or f"postmaster@{helo}"
    token = _spf_budget.set(budget)
    try:
        query = spf.query(
            i=ip,
            s=mail_from,
            h=helo,
            timeout=budget.limits.dns_timeout,
            querytime=budget.limits.total_dns_time,
        )
        result, _code, explanation = query.check()
    except (ValueError, spf.PermError) as error:  # an unparsable IP or identity
        result, explanation = "permerror", str(error)
    finally:
        _spf_budget.reset(token)
    return SpfResult(str(result), identity, scope, str(explanation))


# --- DKIM and ARC (dkimpy) --------------------------------------------------------------------


class _KeyLookup:
    """dkimpy's `dnsfunc`. dkimpy turns a missing key and a DNS timeout alike into "did not
    verify"; what this saw tells the three apart (RFC 6376 6.1.2: no key is a permerror)."""

    def __init__(self, budget: _DnsBudget) -> None:
        self.budget = budget
        self.problem = ""
        self.temporary = False

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        self.problem, self.temporary = "", False
        try:
            records = self.budget.txt(name.decode("ascii"))
        except UnicodeDecodeError:
            records = []
        except _DnsTemporaryError as error:
            self.problem, self.temporary = str(error), True
            raise dkim.DnsTimeoutError(str(error)) from error
        if not records:
            self.problem = f"no key record at {name.decode('ascii', 'replace')}"
            return None
        try:
            dkim.evaluate_pk(name, records[0])
        except (dkim.DKIMException, ValueError) as error:
            self.problem = f"unusable key record: {error}"
        return records[0]


def _check_dkim(message: bytes, budget: _DnsBudget, limits: Limits) -> tuple[DkimResult, ...]:
    headers, _ = _split(message)
    count = sum(1 for name, _ in _fields(headers) if name == b"dkim-signature")
    if count == 0:
        return ()
    try:
        dkim.rfc822_parse(message)
    except dkim.DKIMException as error:  # a header line dkimpy cannot read
        return (DkimResult("permerror", reason=str(error)),)
    results = []
    for index in range(min(count, limits.max_dkim_signatures)):
        verifier = dkim.DKIM(message, minkey=1024, timeout=limits.dns_timeout)
        lookup = _KeyLookup(budget)
        try:
            verified = verifier.verify(idx=index, dnsfunc=lookup)
        except dkim.ValidationError as error:  # a body hash mismatch, a bad tag
            outcome, reason = "fail", str(error)
        except dkim.DKIMException as error:
            outcome, reason = "permerror", str(error)
        else:
            if verified:
                outcome, reason = "pass", ""
            elif lookup.problem:
                outcome = "temperror" if lookup.temporary else "permerror"
                reason = lookup.problem
            else:
                outcome, reason = "fail", "signature did not verify"
        fields = verifier.signature_fields
        results.append(
            DkimResult(
                outcome,
                _text(fields.get(b"d", b"")).lower(),
                _text(fields.get(b"s", b"")),
                _text(fields.get(b"a", b"")),
                _text(fields.get(b"b", b""))[:12],
                reason,
            )
        )
    if count > limits.max_dkim_signatures:
        skipped = count - limits.max_dkim_signatures
        results.append(DkimResult("neutral", reason=f"{skipped} more signatures not checked"))
    return tuple(results)


def _check_arc(message: bytes, budget: _DnsBudget, limits: Limits) -> ArcResult:
    headers, _ = _split(message)
    seals = sum(1 for name, _ in _fields(headers) if name == b"arc-seal")
    if seals == 0:
        return ArcResult("none")
    if seals > limits.max_arc_sets:
        return ArcResult("fail", seals, reason=f"more than {limits.max_arc_sets} ARC sets")
    try:
        verifier = dkim.ARC(message, minkey=1024, timeout=limits.dns_timeout)
        cv, sets, reason = verifier.verify(dnsfunc=_KeyLookup(budget))
    except dkim.DKIMException as error:
        return ArcResult("fail", seals, reason=str(error))
    newest = sets[0] if sets else {}
    sealer = _text(newest.get("as-domain", b"")).lower()
    # dkimpy answers None for a chain a sealer already reported as failed: that is a fail.
    result = _text(cv) if cv in (dkim.CV_Pass, dkim.CV_Fail) else "fail"
    return ArcResult(result, seals, sealer, "" if result == "pass" else str(reason))


# --- DMARC (by hand, see the module docstring) ------------------------------------------------


@dataclass(frozen=True)
class _DmarcRecord:
    policy: Disposition
    subdomain_policy: Disposition
    strict_dkim: bool
    strict_spf: bool
    percent: int


def _check_dmarc(
    message: bytes,
    spf_result: SpfResult,
    dkim_results: tuple[DkimResult, ...],
    budget: _DnsBudget,
    header_problem: str,
) -> DmarcResult:
    if header_problem:
        return DmarcResult("permerror", policy=Disposition.REJECT, reason=header_problem)
    headers, _ = _split(message)
    values = [raw.partition(b":")[2] for name, raw in _fields(headers) if name == b"from"]
    if len(values) != 1:
        return DmarcResult(
            "permerror",
            policy=Disposition.REJECT,
            reason=f"{len(values)} From header fields (RFC 5322 requires one)",
        )
    domains = _from_domains(values[0])
    if not domains:
        return DmarcResult("permerror", policy=Disposition.REJECT, reason="no usable From address")
    # Several addresses (RFC 7489 section 6.6.1): every domain is evaluated, the strictest wins.
    results = [_dmarc_for(domain, spf_result, dkim_results, budget) for domain in sorted(domains)]
    return max(results, key=_severity)


def _severity(result: DmarcResult) -> tuple[int, int]:
    failing = result.result in ("fail", "permerror", "temperror")
    return (failing, list(Disposition).index(result.policy))


def _dmarc_for(
    from_domain: str,
    spf_result: SpfResult,
    dkim_results: tuple[DkimResult, ...],
    budget: _DnsBudget,
) -> DmarcResult:
    organization = _organizational_domain(from_domain)
    try:
        record = _dmarc_record(from_domain, budget)
        applies = "p"
        if record is None and organization != from_domain:
            record = _dmarc_record(organization, budget)
            applies = "sp"
    except _DnsTemporaryError as error:
        return DmarcResult("temperror", from_domain, reason=str(error))
    if record is None:
        return DmarcResult("none", from_domain)
    policy = record.policy if applies == "p" else record.subdomain_policy
    aligned = []
    if spf_result.result == "pass" and _aligned(spf_result.domain, from_domain, record.strict_spf):
        aligned.append("spf")
    if any(
        d.result == "pass" and _aligned(d.domain, from_domain, record.strict_dkim)
        for d in dkim_results
    ):
        aligned.append("dkim")
    if aligned:
        return DmarcResult("pass", from_domain, policy, " ".join(aligned))
    return DmarcResult(
        "fail", from_domain, _sampled(policy, record.percent), reason="no aligned SPF or DKIM pass"
    )


def _sampled(policy: Disposition, percent: int) -> Disposition:
    """pct= (RFC 7489 section 6.6.4): outside the sample, the next milder policy applies."""
    if percent >= 100 or secrets.randbelow(100) < percent:
        return policy
    return {Disposition.REJECT: Disposition.QUARANTINE}.get(policy, Disposition.ACCEPT)


def _dmarc_record(domain: str, budget: _DnsBudget) -> _DmarcRecord | None:
    """The one DMARC record at _dmarc.domain, or None (none, several, or unusable:
    RFC 7489 section 6.6.3)."""
    records = [
        text
        for text in budget.txt(f"_dmarc.{domain}")
        if re.match(rb"v\s*=\s*DMARC1\s*(;|$)", text)
    ]
    if len(records) != 1:
        return None
    tags = _tag_values(records[0].decode("ascii", "replace"))
    policies = {p.value: p for p in Disposition}
    policy = policies.get(tags.get("p", "").lower())
    if policy is None:
        if "rua" not in tags:
            return None
        policy = Disposition.ACCEPT  # section 6.6.3 step 6: rua without a valid p
    percent = tags.get("pct", "100")
    return _DmarcRecord(
        policy,
        policies.get(tags.get("sp", "").lower(), policy),
        tags.get("adkim", "r").lower() == "s",
        tags.get("aspf", "r").lower() == "s",
        int(percent) if percent.isdigit() and int(percent) <= 100 else 100,
    )


def _tag_values(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, value = part.partition("=")
        if equals and name.strip().lower() not in tags:
            tags[name.strip().lower()] = value.strip()
    return tags


def _aligned(domain: str, from_domain: str, strict: bool) -> bool:
    if not domain:
        return False
    if strict:
        return domain == from_domain
    return _organizational_domain(domain) == _organizational_domain(from_domain)


def _organizational_domain(domain: str) -> str:
    """RFC 7489 section 3.2 through the Public Suffix List; a bare public suffix is its own."""
    return _PUBLIC_SUFFIXES.privatesuffix(domain) or domain


def _from_domains(value: bytes) -> set[str]:
    """The From domains, or none at all when the field does not parse cleanly: a field
    that parsers read differently (`a@victim.test]<b@evil.test>`) is a spoofing tool."""
    if len(value) > _MAX_FROM_BYTES:
        return set()
    text = value.decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
    try:
        parsed = policy.default.header_factory("from", text.strip())
        addresses = parsed.addresses
    except (errors.HeaderParseError, IndexError, ValueError):  # the stdlib parser, on "0@"
        return set()
    if any(isinstance(defect, errors.InvalidHeaderDefect) for defect in parsed.defects):
        return set()
    domains = set()
    for address in addresses:
        domain = ascii_domain(address.domain)
        if domain is None:
            return set()
        domains.add(domain)
    return domains


# --- The disposition --------------------------------------------------------------------------


def _disposition(
    dmarc_result: DmarcResult,
    arc_result: ArcResult,
    trusted_arc_sealers: frozenset[str],
) -> tuple[Disposition, str]:
    if dmarc_result.result not in ("fail", "permerror"):
        return Disposition.ACCEPT, ""
    if dmarc_result.policy is Disposition.ACCEPT:
        return Disposition.ACCEPT, ""
    if arc_result.result == "pass" and arc_result.sealer in {
        s.lower() for s in trusted_arc_sealers
    }:
        return (
            Disposition.ACCEPT,
            f"DMARC {dmarc_result.result} overridden by ARC from {arc_result.sealer}",
        )
    return dmarc_result.policy, f"DMARC {dmarc_result.result}: {dmarc_result.reason}"


# --- The header section: bounds, fields ---------------------------------------------------------


def _split(message: bytes) -> tuple[bytes, bytes]:
    """(header section with its line ends, the rest from the blank line on), cut at the
    first empty line however it ends, as dkimpy reads it."""
    found = re.search(rb"\r?\n\r?\n", message)
    if found is None:
        return message, b""
    cut = found.start() + (2 if message[found.start()] == 0x0D else 1)
    return message[:cut], message[cut:]


def _fields(headers: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(lower-case name, the raw field with its continuation lines), in order."""
    current: list[bytes] = []
    for line in headers.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            raw = b"".join(current)
            yield raw.split(b":", 1)[0].strip().lower(), raw
        current = [line]
    if current:
        raw = b"".join(current)
        yield raw.split(b":", 1)[0].strip().lower(), raw


def _header_problem(message: bytes, limits: Limits) -> str:
    headers, _ = _split(message)
    if len(headers) > limits.max_header_bytes:
        return f"header section over {limits.max_header_bytes} bytes"
    count = sum(1 for _ in _fields(headers))
    if count > limits.max_header_fields:
        return f"over {limits.max_header_fields} header fields"
    return ""


def _is_ours(name: bytes, raw: bytes, authserv_id: str) -> bool:
    if name != b"authentication-results":
        return False
    value = raw.partition(b":")[2].decode("utf-8", "replace")
    value = re.sub(r"\([^()]*\)", " ", value)  # CFWS comments around the authserv-id
    return value.split(";", 1)[0].strip().lower() == authserv_id


# --- The Authentication-Results header ---------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+")
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]+@[A-Za-z0-9.\-]+")


def _value(text: str) -> str:
    """A pvalue (RFC 8601 section 2.2) that can never end the clause it is in: a token or
    an address as it is, anything else a quoted-string, control characters replaced."""
    if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text):
        return text
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _clause(method: str, result: str, reason: str, properties: list[tuple[str, str]]) -> str:
    parts = [f"{method}={result}"]
    if reason:
        parts.append(f"reason={_value(reason[:200])}")
    parts += [f"{name}={_value(value)}" for name, value in properties if value]
    return " ".join(parts)


def _spf_properties(result: SpfResult) -> list[tuple[str, str]]:
    if result.scope == "helo":
        return [("smtp.helo", result.domain)]
    return [("smtp.mailfrom", result.identity)]


def _dkim_properties(result: DkimResult) -> list[tuple[str, str]]:
    return [
        ("header.d", result.domain),
        ("header.s", result.selector),
        ("header.a", result.algorithm),
        ("header.b", result.signature),
    ]


def _dmarc_props(result: AuthenticationResult) -> list[tuple[str, str]]:
    properties = [("header.from", result.dmarc.from_domain)]
    if result.dmarc.result in ("pass", "fail"):
        properties.append(("policy.dmarc", result.dmarc.policy.value))
    return properties


def _domain_of(address: str) -> str:
    domain = address.rpartition("@")[2]
    return ascii_domain(domain) or domain.lower()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
