"""What a submitted message may claim about its author (RFC 5322 3.6.2, RFC 6409 8)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import default

from borderline.delivery import header_block

log = logging.getLogger(__name__)

_PARSER = BytesHeaderParser(policy=default)


def sender_refusal(content: bytes | bytearray, owns: Callable[[str], bool]) -> str | None:
    """The reply refusing a submitted message whose From (every address in it) or Sender
    is not an address the account owns, as `owns` says; None when it may go out.

    RFC 5322 3.6: exactly one From field, at most one Sender. A header that does not parse
    names no address the account can be shown to own, so it is refused too."""
    try:
        headers = _PARSER.parsebytes(header_block(content))
        authors = headers.get_all("From") or []
        senders = headers.get_all("Sender") or []
        if len(authors) != 1 or len(senders) > 1:
            return "550 5.7.1 A message needs exactly one From header and at most one Sender"
        fields = [("From", authors[0]), *(("Sender", value) for value in senders)]
        for name, value in fields:
            addresses = [address.addr_spec for address in value.addresses]
            if not addresses:
                return f"550 5.7.1 The {name} header names no address"
            for address in addresses:
                if not owns(address):
                    shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in address)
                    return f"550 5.7.1 {name} address <{shown[:254]}> is not yours to send as"
    except Exception as exc:  # any header the parser fails on is one nobody vouched for
        log.debug("unparseable From or Sender header: %s", exc)  # it may quote addresses
        return "550 5.7.1 The From or Sender header does not parse"
    return None
