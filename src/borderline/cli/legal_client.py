"""Where a legal command runs: on the running server when `borderline serve` holds the
regions (it owns the transparency logs every step is logged on), else here, offline.

Both ways a command is one person's act, authenticated by their staff token, and both give
the same JSON views (borderline.legal.views), which the commands print.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from borderline.cli.common import fail, open_cloud, user_errors
from borderline.cloud import Cloud
from borderline.config import Config
from borderline.legal import LegalDesk
from borderline.legal.office import unpacked
from borderline.staff import Signer, StaffError, StaffRoster

T = TypeVar("T")
# The lock `borderline serve` holds on each region it serves (borderline.runtime.run_lock).
SERVE_LOCK = "serve.pid"


class RemoteError(Exception):
    """The server refused; its reason is the message."""


def served(config: Config, region_id: str) -> bool:
    """Whether a `borderline serve` holds the region (its lock file is locked)."""
    path = config.cloud.data_dir / region_id / SERVE_LOCK
    try:
        with path.open("a") as file:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def server_url(config: Config) -> str | None:
    """The API of the server serving this cloud's regions, if one runs."""
    serving = [r for r in config.regions if served(config, r.id)]
    if not serving:
        return None
    if len(serving) == len(config.regions):
        listen = config.api.listen
    elif serving[0].api is not None:
        listen = serving[0].api
    else:
        raise fail(f"region {serving[0].id} is served by a process with no `api` listener")
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"http://{host}:{listen.port}"


@dataclass
class Local:
    cloud: Cloud
    desk: LegalDesk
    roster: StaffRoster
    signer: Signer


class Remote:
    """The running server's legal API, as the token's person."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the server at {self.http.base_url} did not answer: {exc}") from exc
        if response.is_error:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise RemoteError(str(detail if isinstance(detail, str) else detail or response))
        return response.json()

    def download(self, path: str, into: Path) -> Path:
        """Fetch a package zip and unpack it into `into`; returns the package folder."""
        target = into / Path(path).name
        with self.http.stream("GET", path) as response:
            if response.is_error:
                response.read()
                raise RemoteError(response.json().get("detail", str(response)))
            archive = into / f".{Path(path).name}.zip"
            into.mkdir(parents=True, exist_ok=True)
            with archive.open("wb") as sink:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
        try:
            with unpacked(archive) as folder:
                target = into / folder.name
                if target.exists():
                    raise FileExistsError(f"{target} exists: choose another --out or remove it")
                shutil.copytree(folder, target)
        finally:
            archive.unlink()
        return target

    def close(self) -> None:
        self.http.close()


@contextmanager
def acting(
    config_path: Path,
    token: str | None,
    local: Callable[[Local], T],
    remote: Callable[[Remote], T],
) -> Iterator[T]:
    """Run a command as the token's person, on the server if one runs, else here."""
    if not token:
        raise fail(
            "log in first: `borderline staff token NAME` prints a token; pass it with --token"
            " or BORDERLINE_TOKEN"
        )
    with open_cloud(config_path) as cloud, user_errors(StaffError, RemoteError):
        url = server_url(cloud.config)
        if url is not None:
            client = Remote(url, token)
            try:
                yield remote(client)
            finally:
                client.close()
            return
        roster = StaffRoster.of(cloud.config)
        try:
            with LegalDesk(cloud) as desk:
                yield local(Local(cloud, desk, roster, roster.token_login(token)))
        finally:
            roster.close()
