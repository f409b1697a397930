"""Enhanced status codes (RFC 2034, RFC 3463) on every reply that must carry one.

Borderline's own replies name their code; aiosmtpd's ("250 OK", "503 Error: need MAIL
command", "221 Bye") do not. Once ENHANCEDSTATUSCODES is advertised, every 2xx, 4xx and
5xx reply but the greeting and the answer to HELO or EHLO carries one (RFC 2034 3), so
the codes a reply lacks are filled in here from its basic code, as Postfix does.
"""

from __future__ import annotations

import re

_HAS_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")

# RFC 3463 subjects for the basic codes aiosmtpd replies with; any other gets X.0.0.
_DETAIL = {
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.0.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "534": "5.7.9",
    "535": "5.7.8",
    "538": "5.7.11",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    """The reply with an enhanced status code after its basic code if it has none; 3xx
    replies (354, the 334 challenges of AUTH) never take one."""
    code, separator, text = reply[:3], reply[3:4], reply[4:]
    if not (code.isdigit() and code[0] in "245" and separator in (" ", "-", "")):
        return reply
    if _HAS_CODE.match(text):
        return reply
    detail = _DETAIL.get(code, f"{code[0]}.0.0")
    return f"{code}{separator or ' '}{detail} {text}".rstrip()
