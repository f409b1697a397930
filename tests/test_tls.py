"""The listeners' certificate: the private key is never readable by anyone else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from borderline import tls


def test_key_is_private_from_the_moment_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: dict[str, int] = {}
    real_replace = os.replace

    def observe(source: str, target: str) -> None:
        modes[Path(target).name] = stat.S_IMODE(os.stat(source).st_mode)
        real_replace(source, target)

    monkeypatch.setattr(tls.os, "replace", observe)
    previous = os.umask(0)  # the most permissive umask: nothing may depend on it
    try:
        cert, key = tls.ensure_certificate(tmp_path / "tls", "eu-dublin.example.test")
    finally:
        os.umask(previous)
    assert modes["key.pem"] == 0o600  # already private before it took its name
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["cert.pem", "key.pem"]
    assert tls.ensure_certificate(tmp_path / "tls", "other") == (cert, key)  # kept, not replaced
    assert tls.server_context(tmp_path / "tls", "eu-dublin.example.test") is not None
