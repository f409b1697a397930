"""Accounts: the rules a new account must meet, and password hashing and checking.

Core: no network, no adapter. The composition root (`cloud.py`) ties an account to the
directory, the vault and the store; SMTP submission and IMAP check passwords through here.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from borderline.directory import DirectoryError, normalize_address

PASSWORD_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


class AccountError(Exception):
    """An account cannot be created or changed as asked; the message says why."""


class PasswordStore(Protocol):
    """What password checks need of a region's store."""

    def password_hash(self, address: str) -> str | None: ...
    def set_password_hash(self, address: str, password_hash: str) -> None: ...


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    return PASSWORD_HASHER.hash(password)


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


@functools.cache
def _unknown_account_hash() -> str:
    return PASSWORD_HASHER.hash(secrets.token_urlsafe(16))


def check_password(store: PasswordStore, address: str, password: str) -> bool:
    """Whether the password is the account's. An unknown account costs a real argon2 check
    too, so timing does not tell which accounts exist; an outdated hash is upgraded."""
    stored = store.password_hash(address)
    if stored is None:
        with contextlib.suppress(VerificationError):
            PASSWORD_HASHER.verify(_unknown_account_hash(), password)
        return False
    try:
        PASSWORD_HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    if PASSWORD_HASHER.check_needs_rehash(stored):
        store.set_password_hash(address, PASSWORD_HASHER.hash(password))
    return True
