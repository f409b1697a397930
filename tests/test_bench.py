"""The benchmarks are not run by the suite, so a renamed function they import would go
unnoticed until someone measures: import each one here (their work runs under `__main__`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
MODULES = sorted(path.stem for path in BENCH.glob("*.py"))


@pytest.fixture
def bench_on_path() -> Iterator[None]:
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def test_there_are_benchmarks() -> None:
    assert "smtp_ingest" in MODULES


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.usefixtures("bench_on_path")
def test_benchmark_imports(module: str) -> None:
    importlib.import_module(module)
