"""tests/require.py: a missing component fails the run under CI and skips elsewhere."""

from __future__ import annotations

import pytest

from tests.require import require


def test_a_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "mbsync", "apt-get install isync")
    with pytest.raises(pytest.fail.Exception, match="CI=true and mbsync is missing"):
        require(False, "mbsync", "apt-get install isync")


def test_a_missing_component_skips_with_its_reason_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"mbsync is missing \(apt-get install"):
        require(False, "mbsync", "apt-get install isync")
