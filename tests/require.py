"""The one rule for tests whose component (PostgreSQL, mbsync, getmail, ...) is missing."""

from __future__ import annotations

import os

import pytest


def require(available: bool, component: str, install: str) -> None:
    """Go on if the component is there. Otherwise fail under CI (CI=true), where a run that
    silently skipped it would prove less than it claims; elsewhere skip, saying why (pytest
    -ra prints the reason)."""
    if available:
        return
    reason = f"{component} is missing ({install})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
