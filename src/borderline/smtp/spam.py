"""Spam scoring through rspamd's HTTP protocol (`POST /checkv2`, Debian's `rspamd`).

Blocking, bounded by a timeout; run in the MX's sender-authentication threads. rspamd
that cannot be reached or answers nonsense scores nothing: the message is judged as if
scoring were off (logged), so a stopped rspamd never stops mail.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from collections.abc import Sequence

log = logging.getLogger(__name__)

MAX_REPLY = 1024 * 1024  # rspamd's JSON for one message; its symbols are a few KB


class Rspamd:
    """rspamd's normal worker at `url` (http://host[:port], as the config checked it)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 11333
        self.path = parts.path.rstrip("/") + "/checkv2"
        self.timeout = timeout

    def score(
        self, content: bytes, ip: str, helo: str, mail_from: str, rcpts: Sequence[str]
    ) -> float | None:
        """rspamd's score for the message, or None when it gave none."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.putrequest("POST", self.path, skip_accept_encoding=True)
            fields = [("IP", ip), ("Helo", helo), ("From", mail_from)]
            for name, value in [*fields, *(("Rcpt", rcpt) for rcpt in rcpts)]:
                if value:
                    connection.putheader(name, _header_value(value))
            connection.putheader("Content-Length", str(len(content)))
            connection.endheaders()
            connection.send(content)
            response = connection.getresponse()
            body = response.read(MAX_REPLY)
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            return float(json.loads(body)["score"])
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as exc:
            log.warning("rspamd at %s:%d gave no score: %s", self.host, self.port, exc)
            return None
        finally:
            connection.close()


def _header_value(text: str) -> bytes:
    """Client text (a HELO name, an address) as an HTTP field value that cannot break it."""
    return "".join(c if c.isprintable() else "?" for c in text).encode("utf-8", "replace")
