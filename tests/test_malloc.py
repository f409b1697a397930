"""`borderline serve` has glibc hand freed message-sized buffers back (cli/malloc.py): a
buffer of a few MB, freed after a bigger one, leaves nothing resident, where glibc's own
adjustment keeps it."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import sys
from borderline.cli.malloc import return_big_buffers

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

if sys.argv[1] == "fixed":
    assert return_big_buffers()
first = b"x" * (16 << 20)  # freeing this raises glibc's threshold to 16 MB
del first
before = rss()
second = b"y" * (8 << 20)
del second
print(rss() - before)
"""


def _kept(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_message_buffer_leaves_no_resident_memory() -> None:
    assert _kept("default") > 4 << 20  # what the setting is for: glibc keeps it
    assert _kept("fixed") < 1 << 20
