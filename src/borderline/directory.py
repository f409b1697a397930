"""The only global state: address -> home region, and each region's public keys.

It holds no content and no names, so it may be replicated to every region.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from borderline.durable_sqlite import open_durable

ADDRESS_MAX = 254
# RFC 5321 4.5.1 (postmaster) and RFC 2142 (abuse): every domain of the cloud has them.
POSTMASTER = "postmaster"
ROLE_LOCAL_PARTS = (POSTMASTER, "abuse")


class DirectoryError(Exception):
    pass


@dataclass(frozen=True)
class RegionKeys:
    region_id: str
    sealing_key: bytes
    signing_key: bytes


def normalize_address(address: str) -> str:
    """Lowercase and check an address: one @, a local part and a dotted domain."""
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(address) > ADDRESS_MAX
        or any(c.isspace() or c in '<>()[]\\,;:"' for c in address)
    ):
        raise DirectoryError(f"{address!r} is not a valid mail address")
    return address


class Directory:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_durable(path)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS accounts (address TEXT PRIMARY KEY,"
                " region TEXT NOT NULL)"
            )
            # An alias is homed with its target: it has no region of its own.
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS aliases (address TEXT PRIMARY KEY,"
                " target TEXT NOT NULL REFERENCES accounts (address))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS regions (id TEXT PRIMARY KEY,"
                " sealing_key BLOB NOT NULL, signing_key BLOB NOT NULL)"
            )
        self._cache: dict[str, str | None] = {}
        self._data_version = self._version()

    def _version(self) -> int:
        # SQLite's data_version changes when another connection commits to the file.
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def add(self, address: str, region_id: str) -> None:
        address = normalize_address(address)
        with self._lock, self._db:
            self._refuse_taken(address)
            self._db.execute(
                "INSERT INTO accounts (address, region) VALUES (?, ?)", (address, region_id)
            )
            self._cache.pop(address, None)

    def _refuse_taken(self, address: str) -> None:
        current = self._db.execute(
            "SELECT region FROM accounts WHERE address = ?", (address,)
        ).fetchone()
        if current is not None:
            raise DirectoryError(f"{address} already exists, homed in {current[0]}")
        alias = self._db.execute(
            "SELECT target FROM aliases WHERE address = ?", (address,)
        ).fetchone()
        if alias is not None:
            raise DirectoryError(f"{address} already exists, an alias of {alias[0]}")

    def remove(self, address: str) -> None:
        """Remove an account and every alias of it."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM aliases WHERE target = ?", (address.lower(),))
            self._db.execute("DELETE FROM accounts WHERE address = ?", (address.lower(),))
            self._cache.pop(address.lower(), None)

    def add_alias(self, alias: str, target: str) -> None:
        """Deliver mail for `alias` to the account `target` (an account, not an alias)."""
        alias, target = normalize_address(alias), normalize_address(target)
        with self._lock, self._db:
            self._refuse_taken(alias)
            if (
                self._db.execute("SELECT 1 FROM accounts WHERE address = ?", (target,)).fetchone()
                is None
            ):
                raise DirectoryError(f"no account {target}")
            self._db.execute("INSERT INTO aliases (address, target) VALUES (?, ?)", (alias, target))

    def remove_alias(self, alias: str) -> None:
        with self._lock, self._db:
            removed = self._db.execute("DELETE FROM aliases WHERE address = ?", (alias.lower(),))
        if removed.rowcount == 0:
            raise DirectoryError(f"no alias {alias.lower()}")

    def aliases(self, target: str | None = None) -> list[tuple[str, str]]:
        """(alias, account) pairs, of one account or all."""
        query = "SELECT address, target FROM aliases"
        params: tuple[str, ...] = ()
        if target is not None:
            query, params = query + " WHERE target = ?", (target.lower(),)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY address", params).fetchall()
        return [(str(a), str(t)) for a, t in rows]

    def account_for(
        self,
        address: str,
        *,
        separator: str = "+",
        role_account: str | None = None,
        domains: Collection[str] = (),
    ) -> str | None:
        """The account mail to `address` goes to, or None: the account itself, the target
        of an alias, the same for the address without its `separator` and tag
        (`alice+news@` -> `alice@`), and `role_account` for postmaster@ and abuse@ of every
        domain in `domains` that has no account or alias of that name."""
        address = address.lower()
        found = self._account_or_alias(address)
        if found is not None:
            return found
        local, _, domain = address.rpartition("@")
        if separator and separator in local:
            base = local.split(separator, 1)[0]
            return self.account_for(
                f"{base}@{domain}", separator="", role_account=role_account, domains=domains
            )
        if role_account and local in ROLE_LOCAL_PARTS and domain in domains:
            return self._account_or_alias(role_account.lower())
        return None

    def _account_or_alias(self, address: str) -> str | None:
        if self.home(address) is not None:
            return address
        with self._lock:
            row = self._db.execute(
                "SELECT target FROM aliases WHERE address = ?", (address,)
            ).fetchone()
        return None if row is None else str(row[0])

    def home(self, address: str) -> str | None:
        """The address's home region, or None for an unknown address."""
        address = address.lower()
        if address in self._cache:
            return self._cache[address]
        with self._lock:
            row = self._db.execute(
                "SELECT region FROM accounts WHERE address = ?", (address,)
            ).fetchone()
        region = None if row is None else str(row[0])
        if region is not None:
            self._cache[address] = region
        return region

    def changed_elsewhere(self) -> bool:
        """Whether another process (the command line, another server) changed the directory
        since the last call; if so the cached homes are dropped. One cheap read."""
        with self._lock:
            version = self._version()
            if version == self._data_version:
                return False
            self._data_version = version
            self._cache.clear()
            return True

    def forget_cached_homes(self) -> None:
        """Look every address up afresh (accounts moved or removed by another process)."""
        with self._lock:
            self._cache.clear()

    def accounts(self, region_id: str | None = None) -> list[tuple[str, str]]:
        query = "SELECT address, region FROM accounts"
        params: tuple[str, ...] = ()
        if region_id is not None:
            query += " WHERE region = ?"
            params = (region_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY address", params).fetchall()
        return [(str(a), str(r)) for a, r in rows]

    def publish_region(self, keys: RegionKeys) -> None:
        """Every process publishes at start; unchanged keys write nothing (no fsync)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO regions (id, sealing_key, signing_key) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET sealing_key = excluded.sealing_key,"
                " signing_key = excluded.signing_key"
                " WHERE sealing_key != excluded.sealing_key"
                " OR signing_key != excluded.signing_key",
                (keys.region_id, keys.sealing_key, keys.signing_key),
            )

    def region_keys(self, region_id: str) -> RegionKeys:
        with self._lock:
            row = self._db.execute(
                "SELECT sealing_key, signing_key FROM regions WHERE id = ?", (region_id,)
            ).fetchone()
        if row is None:
            raise DirectoryError(f"region {region_id} has not published its keys")
        return RegionKeys(region_id, bytes(row[0]), bytes(row[1]))

    def close(self) -> None:
        self._db.close()
