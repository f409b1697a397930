"""glibc's malloc, told to hand big buffers back to the system when they are freed.

glibc serves a large allocation with its own mmap and unmaps it when freed, but after the
first such free it raises that threshold to the freed size (up to 32 MiB), so the next
messages' buffers come from per-thread heaps that keep their freed memory: a server that
receives a 24 MB message then holds several such buffers per executor thread. A fixed
threshold turns that adjustment off: every buffer of 1 MiB or more (message bodies,
ciphertexts, relay envelopes) is mapped and unmapped, and the peak is what is alive.
Measured (`bench/smtp_memory.py`, 24 MB messages): the region that seals and relays one
peaks at 5.2x instead of 9.6x and keeps 1.1x instead of 2.2x; ten local deliveries at once
keep 0.01x instead of 0.2 - 0.8x. Elsewhere (musl, macOS) this does nothing.

Fixing the threshold also fixes the trim threshold at its default, 128 KiB: each time a
batch of messages is freed, the top of the heap goes back to the system, and the next
batch faults every page in again (a FETCH of 3,000 messages of 20 KB: 14,000 - 18,000
page faults). Below 1 MiB a heap now keeps up to 8 MiB free at its top: 1,200 - 4,500 (with
32 MiB the same, so the smaller bound; each thread's heap may keep that much).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20


def return_big_buffers() -> bool:
    """Set the fixed thresholds; whether this process's C library took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
