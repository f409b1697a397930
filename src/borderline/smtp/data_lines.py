"""The checks SMTP data needs on every octet, a window at a time.

A DATA window must be checked for bare <CR> and <LF> (Postfix's `smtpd_forbid_bare_newline`),
for lines over RFC 5321's limit, and unstuffed of its transparency dots. With Python's bytes
methods the first and the last were a pass each per kind of octet (three counts, a replace):
a fifth of an ingest process's time at 100 KB (bench/RESULTS.md). numpy compares every octet
of a window with <CR>, <LF> and '.' in vector loops and answers both from those masks; a
window with no line starting with a dot is then used as it came, uncopied. Line lengths need
no mask: a search for the last line feed of each stretch of `limit` octets (memrchr) finds
any over-long line in one C call per stretch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CR, LF, DOT = 13, 10, 46


@dataclass(frozen=True)
class Scan:
    """What one window holds, judged after the two octets fed before it."""

    bare: str | None  # "<CR>" or "<LF>": the first kind of bare line ending found
    line_too_long: bool
    line: int  # length of the unfinished line at the end of the window
    dots: list[int]  # offsets in the window of the transparency dots to drop


def scan(tail: bytes, wire: bytes | bytearray, line: int, limit: int, stuffed: bool) -> Scan:
    """Judge the non-empty `wire`, fed after `tail` (the two octets before it; b'\\r\\n' at
    the start of data), with `line` octets of an unfinished line before it. A carriage
    return that ends `wire` is judged with the next window, the one that ends `tail` now.
    A line is too long when `limit` octets or more stand before its line feed. Dots are
    looked for only in `stuffed` data (DATA; BDAT chunks are not dot-stuffed)."""
    octets = np.frombuffer(wire, np.uint8)
    feeds, returns = octets == LF, octets == CR
    bare = None
    after_return = tail.endswith(b"\r")
    if after_return and not feeds[0]:
        bare = "<CR>"
    elif (feeds[0] and not after_return) or (feeds[1:] & ~returns[:-1]).any():
        bare = "<LF>"
    elif (returns[:-1] & ~feeds[1:]).any():
        bare = "<CR>"
    too_long, line = _line_lengths(wire, line, limit)
    dots = _dots(tail, wire, octets, feeds, returns) if stuffed else []
    return Scan(bare, too_long, line, dots)


def _dots(
    tail: bytes,
    wire: bytes | bytearray,
    octets: np.ndarray,
    feeds: np.ndarray,
    returns: np.ndarray,
) -> list[int]:
    """Where `wire` holds a '.' just after a <CR><LF> (RFC 5321 4.5.2's transparency dot)."""
    dots = []
    if wire[:1] == b"." and tail == b"\r\n":
        dots.append(0)
    if wire[:2] == b"\n." and tail.endswith(b"\r"):
        dots.append(1)
    if len(wire) > 2:
        inside = returns[:-2] & feeds[1:-1] & (octets[2:] == DOT)
        if inside.any():
            dots.extend((np.flatnonzero(inside) + 2).tolist())
    return dots


def _line_lengths(wire: bytes | bytearray, line: int, limit: int) -> tuple[bool, int]:
    """(whether a line of `wire` is too long, the length of its unfinished last line)."""
    first = wire.find(b"\n")
    if first < 0:
        line += len(wire)
        return line >= limit, line
    if line + first >= limit:
        return True, len(wire) - wire.rfind(b"\n") - 1
    start = first + 1  # where a line starts
    while start + limit <= len(wire):
        last = wire.rfind(b"\n", start, start + limit)
        if last < 0:  # no line break in a whole stretch
            return True, len(wire) - wire.rfind(b"\n") - 1
        start = last + 1
    last = wire.rfind(b"\n", start)
    line = len(wire) - (start if last < 0 else last + 1)
    return line >= limit, line
