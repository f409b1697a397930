"""The Internet-mail fixtures (real Knot DNS, Postfix, an HTTPS policy server) for these tests."""

from tests.internet.fixtures import (
    dns,
    dns_server,
    policy_server,
    postfix,
    rogue_ca,
    rspamd,
    silent_dns,
    test_ca,
)

__all__ = [
    "dns",
    "dns_server",
    "policy_server",
    "postfix",
    "rogue_ca",
    "rspamd",
    "silent_dns",
    "test_ca",
]
