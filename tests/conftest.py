"""Shared fixtures: a real cloud on loopback ports, served from a background event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from borderline.cloud import Cloud
from borderline.config import Config, example_config, load_config
from borderline.runtime import Runtime

PASSWORD = "correct horse battery"


def free_base_port() -> int:
    """A base port whose example-config listeners (base+25 ... base+193) are all free."""
    offsets = (25, 87, 43, 93, 125, 187, 143, 193, 80)
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1] % 40000 + 20000
        try:
            for offset in offsets:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def write_config(root: Path, **replace: str) -> Path:
    text = example_config(root / "data", base_port=free_base_port())
    for old, new in replace.items():
        text = text.replace(old, new)
    path = root / "borderline.toml"
    path.write_text(text)
    return path


class RunningCloud:
    """A Runtime on its own thread, so tests can use blocking clients (smtplib, imaplib)."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runtime = Runtime(cloud)
        self.call(self.runtime.start())

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def drained(self, timeout: float = 30) -> bool:
        return bool(self.call(self.runtime.relays_drained(timeout), timeout + 5))

    def stop(self) -> None:
        self.call(self.runtime.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, **{"max_message_size = 26214400": "max_message_size = 1048576"})


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
def cloud(config: Config) -> Iterator[Cloud]:
    cloud = Cloud(config)
    cloud.add_account("alice@example.test", "eu-dublin", PASSWORD)
    cloud.add_account("bob@example.test", "us-east", PASSWORD)
    yield cloud
    cloud.close()


@pytest.fixture
def running(cloud: Cloud) -> Iterator[RunningCloud]:
    running = RunningCloud(cloud)
    yield running
    running.stop()
