"""What one region asks another about an account, sealed and signed: whether a password is
right. A region refers a login to the account's home region only once the home region says
the password is right, so a referral tells the home region only to the account's owner
(issue 15 item 8: a referral answered before any check was an enumeration oracle).

Pure crypto, no network: the question is sealed (HPKE) to the home region's key, so only
the home region reads the password, and signed by the asking region; the answer is signed
by the home region and bound to the question's nonce. How the bytes travel (in-process, or
HTTP to the home region's API listener) is the adapters' business.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from borderline.directory import Directory, DirectoryError
from borderline.vault import SealedMessageError, Vault, seal

QUESTION = b"borderline-password-question-v1\n"
ANSWER = b"borderline-password-answer-v1\n"
MAX_AGE_SECONDS = 60.0
MAX_QUESTION_BYTES = 16 * 1024


class PeeringError(Exception):
    """A question or answer that is forged, stale, replayed, misrouted or malformed."""


@dataclass(frozen=True)
class PasswordQuestion:
    asker: str  # the region the client logged in to
    home: str  # the account's home region, the only one that can answer
    address: str
    password: str
    client_ip: str  # so the home region throttles the guesser, wherever they connect
    nonce: str
    asked_at: float


def ask(
    vault: Vault, directory: Directory, home: str, address: str, password: str, client_ip: str
) -> tuple[PasswordQuestion, bytes]:
    """The question for `home`, and its wire form: sealed to `home`, signed by this region."""
    question = PasswordQuestion(
        vault.region_id, home, address, password, client_ip, secrets.token_hex(16), time.time()
    )
    body = json.dumps(question.__dict__, separators=(",", ":")).encode()
    sealed = seal(directory.region_keys(home).sealing_key, home, body)
    signed = QUESTION + f"{question.asker}\n{home}\n".encode() + sealed
    wire = {
        "asker": question.asker,
        "home": home,
        "sealed": base64.b64encode(sealed).decode(),
        "signature": base64.b64encode(vault.signing_key.sign(signed)).decode(),
    }
    return question, json.dumps(wire).encode()


class QuestionDesk:
    """The home region's side: opens questions addressed to it, once each."""

    def __init__(self, vault: Vault, directory: Directory) -> None:
        self.vault = vault
        self.directory = directory
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def open(self, wire: bytes, now: float | None = None) -> PasswordQuestion:
        now = time.time() if now is None else now
        if len(wire) > MAX_QUESTION_BYTES:
            raise PeeringError("question too large")
        try:
            outer = json.loads(wire)
            asker, home = str(outer["asker"]), str(outer["home"])
            sealed = base64.b64decode(outer["sealed"], validate=True)
            signature = base64.b64decode(outer["signature"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise PeeringError(f"malformed question: {exc}") from None
        if home != self.vault.region_id:
            raise PeeringError(f"question for region {home!r}, asked of {self.vault.region_id}")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.directory.region_keys(asker).signing_key)
            key.verify(signature, QUESTION + f"{asker}\n{home}\n".encode() + sealed)
            fields = json.loads(self.vault.open_sealed(sealed))
            question = PasswordQuestion(**fields)
        except (DirectoryError, InvalidSignature, SealedMessageError, ValueError, TypeError) as exc:
            raise PeeringError(f"question from {asker!r} does not verify: {exc}") from None
        if (question.asker, question.home) != (asker, home):
            raise PeeringError("the sealed question names other regions than its envelope")
        if abs(now - question.asked_at) > MAX_AGE_SECONDS:
            raise PeeringError("stale question")
        with self._lock:
            self._seen = {n: t for n, t in self._seen.items() if now - t <= MAX_AGE_SECONDS}
            if question.nonce in self._seen:
                raise PeeringError("replayed question")
            self._seen[question.nonce] = now
        return question

    def answer(self, question: PasswordQuestion, right: bool) -> bytes:
        verdict = b"right" if right else b"wrong"
        signature = self.vault.signing_key.sign(_answer_bytes(question, verdict))
        return json.dumps(
            {"verdict": verdict.decode(), "signature": base64.b64encode(signature).decode()}
        ).encode()


def _answer_bytes(question: PasswordQuestion, verdict: bytes) -> bytes:
    return ANSWER + f"{question.home}\n{question.nonce}\n".encode() + verdict


def password_is_right(directory: Directory, question: PasswordQuestion, wire: bytes) -> bool:
    """The home region's signed verdict on this very question; anything else counts as no."""
    try:
        fields = json.loads(wire)
        verdict = str(fields["verdict"]).encode()
        signature = base64.b64decode(fields["signature"], validate=True)
        key = directory.region_keys(question.home).signing_key
        Ed25519PublicKey.from_public_bytes(key).verify(signature, _answer_bytes(question, verdict))
    except (ValueError, KeyError, TypeError, binascii.Error, DirectoryError, InvalidSignature):
        return False
    return verdict == b"right"
