"""Connection caps for a listener: in all, and per client network."""

from __future__ import annotations

import ipaddress
from collections import Counter


def client_network(host: str) -> str:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 (one subscriber
    line gets a whole /64, so counting single IPv6 addresses would cap nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionLimiter:
    """Counts open connections; `acquire` refuses one over either cap."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0

    def acquire(self, host: str) -> str | None:
        """The slot to release when the connection ends, or None: refuse it."""
        key = client_network(host)
        if self._count >= self.total or self._open[key] >= self.per_client:
            return None
        self._open[key] += 1
        self._count += 1
        return key

    def release(self, key: str) -> None:
        self._count -= 1
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
