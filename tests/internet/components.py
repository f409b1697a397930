"""What every Internet-mail fixture shares: the CI rule for a missing component, free
loopback ports and polling."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")


def component_missing(reason: str) -> NoReturn:
    """In CI (CI=true) a test whose component is missing fails; elsewhere it skips, saying why."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_program(path: str, package: str) -> str:
    """The program's path, or `component_missing` naming the Debian package that has it."""
    found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
    if found is None:
        component_missing(f"{path} not found (apt-get install {package}; .ci/run installs it)")
    return found


def free_port() -> int:
    """A loopback port free for both TCP and UDP (a DNS server needs both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port for TCP and UDP")


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something other than None (or falsy), or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
