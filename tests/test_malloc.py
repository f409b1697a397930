"""`borderline serve` has glibc hand freed message-sized buffers back (cli/malloc.py): a
buffer of a few MB, freed after a bigger one, leaves nothing resident, where glibc's own
adjustment keeps it; and the heap keeps what a batch of small messages freed, so the next
batch does not fault its pages in again."""

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


BATCHES = r"""
import resource, sys
from borderline.cli.malloc import return_big_buffers

if sys.argv[1] == "fixed":
    assert return_big_buffers()
batch = [b"x" * 20_000 for _ in range(300)]  # 6 MB of messages, at the top of the heap
del batch
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
batch = [b"y" * 20_000 for _ in range(300)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(probe: str, mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_message_buffer_leaves_no_resident_memory() -> None:
    assert _run(PROBE, "default") > 4 << 20  # what the setting is for: glibc keeps it
    assert _run(PROBE, "fixed") < 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_next_batch_of_messages_reuses_the_memory_of_the_last() -> None:
    assert _run(BATCHES, "default") > 800  # 1,500 pages: the heap's top went back
    assert _run(BATCHES, "fixed") < 150
