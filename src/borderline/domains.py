"""Mail domain names as DNS sees them: the one check both the receiving side (mailauth) and
the sending side (outbound routing) apply to a name a remote party gave us."""

from __future__ import annotations

import re

import idna

_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}")


def ascii_domain(domain: str) -> str | None:
    """The lower-case A-label form (IDNA 2008 with UTS 46 mapping) of a syntactically valid
    host name with at least two labels, or None."""
    name = domain.strip().rstrip(".")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None
    return ascii_name if _HOSTNAME.fullmatch(ascii_name) else None
