"""`borderline serve` as a real process, for tests that kill it or watch its memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def serve(config_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "borderline", "serve", "-c", str(config_path), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
