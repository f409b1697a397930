"""Shared fixtures: a real cloud on loopback ports, served from a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from borderline.cli.demo import free_base_port
from borderline.cloud import Cloud
from borderline.config import Config, example_config, load_config
from borderline.runtime import Runtime

PASSWORD = "correct horse battery"


def write_config(root: Path, **replace: str) -> Path:
    text = example_config(root / "data", base_port=free_base_port(), cleartext_login=True)
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
