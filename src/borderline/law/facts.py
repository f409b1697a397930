"""Facts about custodians and accounts, supplied by the caller.

The law package never reads the cloud's configuration or directory itself (it is a core package
with no I/O); the composition root answers these questions through `Facts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Custodian:
    """A legal entity that operates regions and holds their keys: who a court can compel."""

    id: str
    name: str
    jurisdiction: str


@dataclass(frozen=True)
class Region:
    id: str
    location: str
    custodian_id: str


@dataclass(frozen=True)
class AccountLocation:
    """Where an account's data lives and who holds its keys (and so controls it)."""

    address: str
    region_id: str
    region_jurisdiction: str
    custodian: Custodian


class Facts(Protocol):
    def custodian(self, custodian_id: str) -> Custodian | None: ...

    def custodians(self) -> list[Custodian]:
        """Every custodian, so an error about an unknown one can list the known ids."""
        ...

    def locate(self, address: str) -> AccountLocation | None:
        """None means there is no such account (the item is decided `no_data`)."""
        ...


class StaticFacts:
    """Facts from fixed lists, as the composition root builds them from config and directory."""

    def __init__(
        self,
        custodians: Iterable[Custodian],
        regions: Iterable[Region],
        accounts: Mapping[str, str],
    ) -> None:
        self._custodians = {c.id: c for c in custodians}
        self._regions = {r.id: r for r in regions}
        for region in self._regions.values():
            if region.custodian_id not in self._custodians:
                raise ValueError(f"region {region.id!r}: unknown custodian {region.custodian_id!r}")
        for address, region_id in accounts.items():
            if region_id not in self._regions:
                raise ValueError(f"account {address!r}: unknown region {region_id!r}")
        self._accounts = {address.lower(): region for address, region in accounts.items()}

    def custodian(self, custodian_id: str) -> Custodian | None:
        return self._custodians.get(custodian_id)

    def custodians(self) -> list[Custodian]:
        return sorted(self._custodians.values(), key=lambda c: c.id)

    def locate(self, address: str) -> AccountLocation | None:
        region_id = self._accounts.get(address.lower())
        if region_id is None:
            return None
        region = self._regions[region_id]
        return AccountLocation(
            address=address,
            region_id=region.id,
            region_jurisdiction=region.location,
            custodian=self._custodians[region.custodian_id],
        )
