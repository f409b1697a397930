"""The address argument of MAIL and RCPT, by RFC 5321 4.1.2's Path grammar (with RFC 6531's
UTF-8 in local parts and domains).

aiosmtpd parses it with the `email` package's RFC 5322 header parser, which repairs what it
cannot read instead of refusing it: `<not an address` became the address `"not an
address"`, `<a@b.test` and `a@b.test>` lost their stray bracket, `<a b@c.test>` was quoted,
comments were dropped, and NUL, `<a@-b.test>` or `<a..b@c.test>` went through. Each of
those is refused here, with the reason in the reply.

Kept from common practice (Postfix does the same by default): a space between `FROM:` or
`TO:` and the path, and a mailbox without angle brackets. A source route (`<@a.test:x@b.test>`)
is accepted and dropped (RFC 5321 4.1.1.3, Appendix C); a quoted local part that needs no
quotes is unquoted (`"alice"@x` is `alice@x`, RFC 5321 4.1.2).
"""

from __future__ import annotations

import ipaddress
import re

from borderline.directory import POSTMASTER

# RFC 5321 4.5.3.1: local part, domain, and the whole path with its brackets, in octets.
LOCAL_PART_MAX = 64
DOMAIN_MAX = 255
PATH_MAX = 256
NULL_PATH = "<>"

# Any non-ASCII character (RFC 6531 UTF8-non-ascii; aiosmtpd's undecodable bytes too, which
# protocol.py refuses with their own reply).
_UTF8 = "\x80-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_UTF8}]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8}]|\\[\x20-\x7e])*"'
_LET_DIG = rf"[A-Za-z0-9{_UTF8}]"
_LABEL = rf"{_LET_DIG}(?:[A-Za-z0-9\-{_UTF8}]*{_LET_DIG})?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[^\[\]\\]*\]"
_MAILBOX = rf"(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})"
_ADL = rf"@{_DOMAIN}(?:,@{_DOMAIN})*"
_PATH = re.compile(rf"<(?:{_ADL}:)?(?:{_MAILBOX}|(?P<postmaster>(?i:{POSTMASTER})))>")
_BARE = re.compile(_MAILBOX)
_DOT_STRING_ONLY = re.compile(_DOT_STRING)
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


class MalformedPath(ValueError):
    """The argument is not a path; the message says why, for the reply."""


def parse_path(argument: str, *, reverse: bool) -> tuple[str, str]:
    """(address, parameters) of a MAIL (`reverse`) or RCPT argument after `FROM:`/`TO:`.
    The address is the mailbox, `<>` for MAIL's null reverse-path, or `Postmaster` as RCPT
    gave it; ('', '') for an empty argument (aiosmtpd answers its syntax error)."""
    argument = argument.lstrip(" ")
    if not argument:
        return "", ""
    if any(c < " " or c == "\x7f" for c in argument):
        raise MalformedPath("a control character in the address")
    path, parameters = _split(argument)
    if path == NULL_PATH:
        if not reverse:
            raise MalformedPath("the null path <> is a sender's only, never a recipient")
        return NULL_PATH, parameters
    if path.startswith("<"):
        match = _PATH.fullmatch(path)
    elif ">" in path:
        raise MalformedPath("a '>' without its '<'")
    else:
        match = _BARE.fullmatch(path)
    if match is None:
        raise MalformedPath("not a mailbox (local-part@domain, RFC 5321 4.1.2)")
    if match.groupdict().get("postmaster") is not None:
        if reverse:
            raise MalformedPath("a sender needs a domain")
        return match["postmaster"], parameters
    mailbox = _mailbox(match["local"], match["domain"])
    if _octets(path) > PATH_MAX:
        raise MalformedPath(f"the path is longer than {PATH_MAX} octets")
    return mailbox, parameters


def _split(argument: str) -> tuple[str, str]:
    """The path and the parameters after it. A '>' inside a quoted local part does not
    end the path."""
    if not argument.startswith("<"):
        path, _, parameters = argument.partition(" ")
        return path, parameters.lstrip(" ")
    quoted = escaped = False
    for at, char in enumerate(argument):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            path, rest = argument[: at + 1], argument[at + 1 :]
            if rest and not rest.startswith(" "):
                raise MalformedPath("text after the closing '>': parameters follow a space")
            return path, rest.lstrip(" ")
    raise MalformedPath("no closing '>'")


def _mailbox(local: str, domain: str) -> str:
    if local.startswith('"') and _DOT_STRING_ONLY.fullmatch(local[1:-1]):
        local = local[1:-1]
    if _octets(local) > LOCAL_PART_MAX:
        raise MalformedPath(f"the local part is longer than {LOCAL_PART_MAX} octets")
    if _octets(domain) > DOMAIN_MAX:
        raise MalformedPath(f"the domain is longer than {DOMAIN_MAX} octets")
    if domain.startswith("[") and not _valid_literal(domain[1:-1]):
        raise MalformedPath("not an address literal (RFC 5321 4.1.3)")
    return f"{local}@{domain}"


def _valid_literal(literal: str) -> bool:
    """RFC 5321 4.1.3: an IPv4 address, `IPv6:` and an IPv6 address, or a tagged literal."""
    if literal[:5].lower() == "ipv6:":
        if "%" in literal:  # a zone index names an interface of the sender's host
            return False
        try:
            ipaddress.IPv6Address(literal[5:])
        except ValueError:
            return False
        return True
    if re.fullmatch(r"[0-9.]+", literal):
        try:
            ipaddress.IPv4Address(literal)
        except ValueError:
            return False
        return True
    return _GENERAL_LITERAL.fullmatch(literal) is not None


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))
