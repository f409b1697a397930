"""Password hashing at the configured argon2id cost: the default is RFC 9106's, bad costs
are refused by name, and a hash made at another cost verifies and is upgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import extract_parameters

from borderline.accounts import PasswordCost, Passwords
from borderline.config import ConfigError, example_config, parse_config
from borderline.store import open_store
from tests.conftest import CHEAP_PASSWORDS

ADDRESS = "alice@example.test"


def test_the_default_cost_is_rfc_9106s_and_bad_costs_are_named(tmp_path: Path) -> None:
    config = parse_config(example_config(tmp_path))
    assert PasswordCost.of(config.passwords) == PasswordCost(3, 65536, 4)
    text = example_config(tmp_path) + "\n[passwords]\nmemory_kib = 1024\n"
    with pytest.raises(ConfigError, match=r"passwords\.memory_kib"):
        parse_config(text)


def test_a_hash_at_another_cost_verifies_and_is_upgraded_at_a_right_login(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "mail.sqlite", 5.0)
    try:
        store.create_account(ADDRESS, Passwords(PasswordCost()).hash("old cost password"))
        passwords = Passwords(CHEAP_PASSWORDS)
        assert not passwords.check(store, ADDRESS, "a wrong password")
        assert extract_parameters(store.password_hash(ADDRESS) or "").memory_cost == 65536
        assert passwords.check(store, ADDRESS, "old cost password")
        upgraded = extract_parameters(store.password_hash(ADDRESS) or "")
        assert (upgraded.time_cost, upgraded.memory_cost, upgraded.parallelism) == (1, 8192, 1)
        assert passwords.check(store, ADDRESS, "old cost password")
        assert not passwords.check(store, "nobody@example.test", "old cost password")
    finally:
        store.close()
