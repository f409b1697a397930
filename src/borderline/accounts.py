"""Accounts: the rules a new account must meet, and password hashing and checking.

Core: no network, no adapter. The composition root (`cloud.py`) ties an account to the
directory, the vault and the store; SMTP submission and IMAP check passwords through here.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from borderline.directory import DirectoryError, normalize_address

if TYPE_CHECKING:
    from borderline.config import PasswordsSection

MIN_PASSWORD_LENGTH = 8


class AccountError(Exception):
    """An account cannot be created or changed as asked; the message says why."""


class PasswordStore(Protocol):
    """What password checks need of a region's store."""

    def password_hash(self, address: str) -> str | None: ...
    def set_password_hash(self, address: str, password_hash: str) -> None: ...


@dataclass(frozen=True)
class PasswordCost:
    """argon2id parameters: passes, memory (KiB) and lanes. The default is argon2-cffi's
    (RFC 9106's second recommendation, 64 MiB); each login costs one derivation."""

    time_cost: int = 3
    memory_cost: int = 65536
    parallelism: int = 4

    def __str__(self) -> str:
        return f"{self.time_cost},{self.memory_cost},{self.parallelism}"

    @classmethod
    def parse(cls, text: str) -> PasswordCost:
        t, m, p = (int(x) for x in text.split(","))
        return cls(t, m, p)

    @classmethod
    def of(cls, section: PasswordsSection) -> PasswordCost:
        return cls(section.time_cost, section.memory_kib, section.parallelism)


def new_account_address(address: str, domains: list[str], separator: str = "+") -> str:
    """The normalized address of a new account or alias, if this cloud may home it. Its
    local part may not hold the plus-addressing `separator`: `alice+news@` is alice's."""
    try:
        address = normalize_address(address)
    except DirectoryError as exc:
        raise AccountError(str(exc)) from exc
    local, _, domain = address.rpartition("@")
    if domain not in domains:
        raise AccountError(f"{domain} is not a domain of this cloud ({', '.join(domains)})")
    if separator and separator in local:
        raise AccountError(
            f"{address}: {separator!r} separates a tag (plus-addressing), so it cannot be in"
            " a new address"
        )
    return address


class Passwords:
    """Account passwords hashed at one argon2id cost (the config's `[passwords]`). A hash
    made at another cost still verifies, and is made again at this one on the account's
    next right login, so changing the cost needs no migration."""

    def __init__(self, cost: PasswordCost) -> None:
        self._hasher = PasswordHasher(cost.time_cost, cost.memory_cost, cost.parallelism)

    @functools.cached_property
    def _unknown_account_hash(self) -> str:
        """What an unknown account is checked against, so timing does not tell which exist."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        return self._hasher.hash(password)

    def check(self, store: PasswordStore, address: str, password: str) -> bool:
        """Whether the password is the account's. An unknown account costs a real argon2
        check too; an outdated hash is upgraded."""
        stored = store.password_hash(address)
        if stored is None:
            with contextlib.suppress(VerificationError):
                self._hasher.verify(self._unknown_account_hash, password)
            return False
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if self._hasher.check_needs_rehash(stored):
            store.set_password_hash(address, self._hasher.hash(password))
        return True
