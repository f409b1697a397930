"""Pushing a region's checkpoints to its witnesses: a C2SP tlog-witness client.

Network I/O, so it lives outside the core `tlog` package, which only builds the requests and
checks the answers; the API server's publisher and the CLI (when no server runs) both use it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

from borderline.config import WitnessSection
from borderline.tlog import (
    TlogError,
    TransparencyLog,
    VerificationError,
    VerifierKey,
    parse_checkpoint,
)
from borderline.tlog.note import parse_decimal, parse_note
from borderline.tlog.witness import origin_hash, parse_add_checkpoint

log = logging.getLogger(__name__)

SIZE_TYPE = "text/x.tlog.size"
MAX_ANSWER = 64 * 1024  # cosignature lines or a checkpoint: a few hundred bytes


class WitnessUnavailable(TlogError):
    """A witness did not answer, or answered something other than the protocol allows."""


class WitnessClient:
    """One witness of one log, over a keep-alive connection (as tlog-witness asks)."""

    def __init__(self, section: WitnessSection, origin: str, timeout: float = 10.0) -> None:
        self.key = VerifierKey.parse(section.key)
        self.name = self.key.name
        self._submit = f"{section.url}/add-checkpoint"
        self._monitor = f"{section.monitoring or section.url}/{origin_hash(origin)}/checkpoint"
        self._http = httpx.Client(timeout=timeout)
        self._size = 0  # the size we believe the witness last cosigned; 409 corrects it

    def _request(self, method: str, url: str, body: bytes | None = None) -> httpx.Response:
        """A bounded request: a witness cannot make us read more than MAX_ANSWER bytes."""
        try:
            with self._http.stream(method, url, content=body) as response:
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_ANSWER:
                        raise WitnessUnavailable(f"witness {self.name}: answer too large")
        except httpx.HTTPError as exc:
            raise WitnessUnavailable(f"witness {self.name} at {url}: {exc}") from exc
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(data))

    def push(self, transparency_log: TransparencyLog) -> None:
        """Have the latest signed checkpoint cosigned and attach the cosignature to it."""
        for _ in range(3):
            body = transparency_log.witness_request(self._size)
            response = self._request("POST", self._submit, body)
            if response.status_code == 409 and response.headers.get("content-type") == SIZE_TYPE:
                try:
                    self._size = parse_decimal(response.text.removesuffix("\n"), "size")
                except TlogError as exc:
                    raise WitnessUnavailable(f"witness {self.name}: bad 409 body") from exc
                continue  # witness_request refuses a size larger than the log: a rollback
            if response.status_code != 200:
                raise WitnessUnavailable(
                    f"witness {self.name} refused the checkpoint: {response.status_code}"
                    f" {response.text[:200].strip()}"
                )
            transparency_log.add_cosignature(response.content, self.key)
            note = parse_add_checkpoint(body).note
            self._size = parse_checkpoint(parse_note(note).text).size
            return
        raise WitnessUnavailable(f"witness {self.name} keeps changing its size")

    def latest(self) -> bytes | None:
        """The witness's latest cosigned checkpoint of the log (monitoring endpoint)."""
        response = self._request("GET", self._monitor)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise WitnessUnavailable(f"witness {self.name}: {response.status_code}")
        return response.content

    def close(self) -> None:
        self._http.close()


class WitnessPublisher:
    """Gets every new checkpoint of one region's log cosigned by its configured witnesses."""

    def __init__(self, witnesses: Sequence[WitnessSection], origin: str) -> None:
        self.clients = [WitnessClient(w, origin) for w in witnesses]

    def check_start(self, transparency_log: TransparencyLog) -> None:
        """Refuse (CorruptLogError) a log smaller than a checkpoint a witness holds for it."""
        for client in self.clients:
            try:
                note = client.latest()
            except WitnessUnavailable as exc:
                log.warning("%s: cannot check the log against it: %s", client.name, exc)
                continue
            if note is not None:
                transparency_log.check_witnessed(note, f"witness {client.name}")

    def push(self, transparency_log: TransparencyLog) -> list[str]:
        """Push the latest signed checkpoint to each witness that has not cosigned it; returns
        the problems (a witness down does not stop the others). A witness holding a larger
        checkpoint than the log raises CorruptLogError: the log was rolled back."""
        problems = []
        done = set(transparency_log.cosigners(transparency_log.checkpoint()))
        for client in self.clients:
            if client.name in done:
                continue
            try:
                client.push(transparency_log)
            except (WitnessUnavailable, VerificationError) as exc:
                problems.append(str(exc))
        return problems

    def close(self) -> None:
        for client in self.clients:
            client.close()
