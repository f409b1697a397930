"""CLI helpers: the `borderline` command run in a temp dir holding a fresh cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import run

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "long enough pw"


def ok(*args: str, cwd: Path) -> str:
    done = run(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fails(*args: str, cwd: Path) -> str:
    """The command exits 1 with a one-line reason."""
    done = run(*args, cwd=cwd)
    assert done.returncode == 1, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ok("init", cwd=tmp_path)
    for address in (ALICE, BOB):
        ok(
            "account",
            "add",
            address,
            "--region",
            "eu-dublin",
            "--password",
            PASSWORD,
            cwd=tmp_path,
        )
    return tmp_path
