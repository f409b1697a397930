"""How a region reaches another region's question desk (borderline.peering): in this process
when the home region is served here, else over HTTP to the home region's API listener.
Network plumbing shared by the adapters, serving no protocol of its own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import httpx

from borderline.config import Config
from borderline.directory import Directory
from borderline.peering import ask, password_is_right
from borderline.vault import Vault

log = logging.getLogger(__name__)

QUESTION_PATH = "/inter-region/v1/password-question"
TIMEOUT_SECONDS = 5.0


class QuestionAnswerer(Protocol):
    """A home region served in this process."""

    def answer_password_question(self, wire: bytes) -> bytes: ...


class Peers:
    """One per process: asks home regions whether a password is right."""

    def __init__(
        self,
        config: Config,
        directory: Directory,
        served_here: Callable[[str], QuestionAnswerer | None],
    ) -> None:
        self.config = config
        self.directory = directory
        self.served_here = served_here

    def password_is_right(
        self, asker: Vault, home: str, address: str, password: str, client_ip: str
    ) -> bool:
        """Blocking (the home region runs argon2): call it off the event loop. Any failure
        to get a signed answer counts as a wrong password, so an outage reveals nothing."""
        question, wire = ask(asker, self.directory, home, address, password, client_ip)
        local = self.served_here(home)
        if local is not None:
            return password_is_right(self.directory, question, local.answer_password_question(wire))
        listen = self.config.region(home).api
        if listen is None:
            log.warning("region %s has no api listener: a login referral to it is refused", home)
            return False
        try:
            reply = httpx.post(
                f"http://{listen}{QUESTION_PATH}", content=wire, timeout=TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            log.warning("region %s did not answer a password question: %s", home, exc)
            return False
        return reply.status_code == 200 and password_is_right(
            self.directory, question, reply.content
        )
