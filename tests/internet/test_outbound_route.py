"""MX resolution and MTA-STS against the real Knot DNS server, the HTTPS policy server
(certificates from the test CA, good and bad) and the real Postfix as the MX."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from borderline.smtp.outbound_route import (
    MtaSts,
    MxHost,
    RouteError,
    RouteLimits,
    StsMode,
    TlsRequirement,
    decide,
    parse_policy,
    plan,
    resolve_mx,
    tls_context,
)
from tests.internet.dns_server import KnotServer, Record, txt
from tests.internet.https_policy import PolicyServer, Served
from tests.internet.postfix import PostfixServer
from tests.internet.testca import TestCA


def anywhere(_: object) -> bool:
    """The tests' servers are all on loopback, which the default filter refuses."""
    return True


def mx(dns: KnotServer, domain: str) -> list[MxHost]:
    return asyncio.run(resolve_mx(domain, dns.async_resolver(), allowed=anywhere))


def route_error(dns: KnotServer, domain: str, **options: object) -> RouteError:
    with pytest.raises(RouteError) as caught:
        asyncio.run(resolve_mx(domain, dns.async_resolver(), **options))  # type: ignore[arg-type]
    return caught.value


def test_mx_by_preference_with_addresses(dns: KnotServer) -> None:
    dns.publish(
        [
            Record("dest", "MX", "20 backup.dest"),
            Record("dest", "MX", "10 primary.dest"),
            Record("primary.dest", "A", "127.0.0.2"),
            Record("primary.dest", "AAAA", "::1"),
            Record("backup.dest", "A", "127.0.0.3"),
        ]
    )
    assert mx(dns, "dest.test") == [
        MxHost("primary.dest.test", 10, ("::1", "127.0.0.2")),
        MxHost("backup.dest.test", 20, ("127.0.0.3",)),
    ]


def test_loopback_and_private_addresses_are_refused_by_default(dns: KnotServer) -> None:
    """A hostile domain must not turn our MTA against our own network."""
    dns.publish(
        [
            Record("evil", "MX", "10 mx.evil"),
            Record("mx.evil", "A", "127.0.0.1"),
            Record("mx.evil", "A", "10.0.0.5"),
        ]
    )
    error = route_error(dns, "evil.test")
    assert error.permanent and "usable address" in str(error)


def test_address_fallback_without_mx(dns: KnotServer) -> None:
    dns.publish([Record("bare", "A", "127.0.0.4")])
    assert mx(dns, "bare.test") == [MxHost("bare.test", 0, ("127.0.0.4",), implicit=True)]


def test_null_mx_and_nonexistent_domains_are_permanent(dns: KnotServer) -> None:
    dns.publish(
        [
            Record("nomail", "MX", "0 ."),
            Record("nomail", "A", "127.0.0.5"),
            Record("empty", "TXT", '"x"'),
        ]
    )
    assert "null MX" in str(route_error(dns, "nomail.test"))
    assert route_error(dns, "missing.test").permanent
    assert "no MX and no address" in str(route_error(dns, "empty.test"))
    assert route_error(dns, "bad_name.test").permanent


def test_cnames_are_followed(dns: KnotServer) -> None:
    dns.publish(
        [
            Record("alias", "CNAME", "real"),
            Record("real", "MX", "10 mxalias.real"),
            Record("mxalias.real", "CNAME", "host.real"),
            Record("host.real", "A", "127.0.0.6"),
        ]
    )
    assert mx(dns, "alias.test") == [MxHost("mxalias.real.test", 10, ("127.0.0.6",))]


def test_international_domain_names(dns: KnotServer) -> None:
    dns.publish(
        [
            Record("xn--bcher-kva", "MX", "10 mx.xn--bcher-kva"),
            Record("mx.xn--bcher-kva", "A", "127.0.0.7"),
        ]
    )
    assert mx(dns, "Bücher.test")[0].name == "mx.xn--bcher-kva.test"


def test_mx_host_count_is_bounded(dns: KnotServer) -> None:
    dns.publish(
        [Record("many", "MX", f"{n} h{n}.many") for n in range(30)]
        + [Record(f"h{n}.many", "A", "127.0.0.8") for n in range(30)]
    )
    assert [h.preference for h in mx(dns, "many.test")] == list(range(10))


def test_unanswered_dns_is_temporary(dns: KnotServer, silent_dns: int) -> None:
    resolver = dns.async_resolver()
    resolver.port = silent_dns
    with pytest.raises(RouteError) as caught:
        asyncio.run(
            resolve_mx(
                "dest.test", resolver, limits=RouteLimits(query_timeout=0.2, resolution_timeout=1)
            )
        )
    assert not caught.value.permanent


# --- MTA-STS --------------------------------------------------------------------------------

ENFORCE = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmx: *.backup.test\r\n"
    "max_age: 86400\r\n"
)


def sts_records(policy_id: str = "20261201", *, txt_record: bool = True) -> list[Record]:
    records = [
        Record("remote", "MX", "10 mx.remote"),
        Record("remote", "MX", "20 other.remote"),
        Record("mx.remote", "A", "127.0.0.1"),
        Record("other.remote", "A", "127.0.0.1"),
        Record("mta-sts.remote", "A", "127.0.0.1"),
    ]
    if txt_record:
        records.append(txt("_mta-sts.remote", f"v=STSv1; id={policy_id}"))
    return records


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sts(
    tmp_path: Path, dns: KnotServer, policy_server: PolicyServer, test_ca: TestCA, clock: Clock
) -> Iterator[MtaSts]:
    cache = MtaSts(
        tmp_path,
        dns.async_resolver(),
        https_port=policy_server.port,
        ca_file=test_ca.ca_file,
        allowed=anywhere,
        clock=clock,
    )
    yield cache
    cache.close()


def serve(
    policy_server: PolicyServer,
    ca: TestCA,
    policy: str | Served = ENFORCE,
    expired: bool = False,
    name: str = "mta-sts.remote.test",
) -> None:
    policy_server.serve("mta-sts.remote.test", ca.issue(name, expired=expired), policy)


def test_enforce_policy_decides_each_mx(
    dns: KnotServer, policy_server: PolicyServer, test_ca: TestCA, sts: MtaSts
) -> None:
    dns.publish(sts_records())
    serve(policy_server, test_ca)
    route = asyncio.run(plan("remote.test", dns.async_resolver(), sts, allowed=anywhere))
    assert route.policy is not None and route.policy.mode is StsMode.ENFORCE
    assert [(h.mx.name, h.tls) for h in route.hops] == [
        ("mx.remote.test", TlsRequirement.VALIDATED)
    ]
    assert [h.mx.name for h in route.refused] == ["other.remote.test"]


@pytest.mark.parametrize("problem", ["rogue CA", "expired", "wrong name"])
def test_policy_behind_a_bad_certificate_is_not_used(
    dns: KnotServer,
    policy_server: PolicyServer,
    test_ca: TestCA,
    rogue_ca: TestCA,
    sts: MtaSts,
    problem: str,
) -> None:
    dns.publish(sts_records())
    if problem == "rogue CA":
        serve(policy_server, rogue_ca)
    else:
        serve(
            policy_server,
            test_ca,
            expired=problem == "expired",
            name="mta-sts.other.test" if problem == "wrong name" else "mta-sts.remote.test",
        )
    assert asyncio.run(sts.policy("remote.test")) is None
    assert sts.fetches == 1


@pytest.mark.parametrize(
    "served",
    [
        Served(b"", status=302, location="https://evil.test/p"),
        Served(ENFORCE.encode(), content_type="text/html"),
        Served(ENFORCE.encode() + b"mx: x.test\n" * 7000),
        Served(b"version: STSv1\nmode: enforce\nmax_age: 600\n"),  # no mx lines
        Served(ENFORCE.encode(), status=404),
    ],
    ids=["redirect", "html", "too big", "no mx", "404"],
)
def test_unusable_responses_give_no_policy(
    dns: KnotServer, policy_server: PolicyServer, test_ca: TestCA, sts: MtaSts, served: Served
) -> None:
    dns.publish(sts_records())
    serve(policy_server, test_ca, served)
    assert asyncio.run(sts.policy("remote.test")) is None


def test_cache_honours_id_and_max_age_and_survives_restarts(
    tmp_path: Path,
    dns: KnotServer,
    policy_server: PolicyServer,
    test_ca: TestCA,
    sts: MtaSts,
    clock: Clock,
) -> None:
    dns.publish(sts_records("one"))
    serve(policy_server, test_ca)
    assert asyncio.run(sts.policy("remote.test")) is not None
    assert asyncio.run(sts.policy("remote.test")) is not None
    assert sts.fetches == 1  # same id: the cached policy
    # An attacker strips the TXT record (or DNS fails): the policy seen still applies.
    dns.publish(sts_records(txt_record=False))
    reopened = MtaSts(
        tmp_path,
        dns.async_resolver(),
        https_port=policy_server.port,
        ca_file=test_ca.ca_file,
        allowed=anywhere,
        clock=clock,
    )
    try:
        kept = asyncio.run(reopened.policy("remote.test"))
        assert kept is not None and kept.mode is StsMode.ENFORCE and reopened.fetches == 0
        clock.now += 86400  # max_age has passed
        assert asyncio.run(reopened.policy("remote.test")) is None
    finally:
        reopened.close()
    # A new id means a new policy: fetched again.
    dns.publish(sts_records("two"))
    serve(policy_server, test_ca, ENFORCE.replace("enforce", "testing"))
    fresh = asyncio.run(sts.policy("remote.test"))
    assert fresh is not None and fresh.mode is StsMode.TESTING and fresh.policy_id == "two"
    assert sts.fetches == 2


def test_enforce_with_no_matching_mx_is_a_temporary_failure(
    dns: KnotServer, policy_server: PolicyServer, test_ca: TestCA, sts: MtaSts
) -> None:
    dns.publish([r for r in sts_records() if "mx.remote" not in r.name + r.data])
    serve(policy_server, test_ca)
    with pytest.raises(RouteError) as caught:
        asyncio.run(plan("remote.test", dns.async_resolver(), sts, allowed=anywhere))
    assert not caught.value.permanent and "MTA-STS" in str(caught.value)


def test_policy_parsing_and_matching() -> None:
    policy = parse_policy(ENFORCE, "id", 0)
    assert policy.matches("mx.remote.test") and policy.matches("MX.Remote.Test.")
    assert policy.matches("a.backup.test")
    assert not policy.matches("backup.test") and not policy.matches("a.b.backup.test")
    assert parse_policy(ENFORCE.replace("86400", "9999999999"), "id", 0).max_age == 31_557_600
    for broken in (
        "mode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
    ):
        with pytest.raises(ValueError):
            parse_policy(broken, "id", 0)
    host = MxHost("mx.remote.test", 10, ("127.0.0.1",))
    assert decide(None, host).tls is TlsRequirement.OPPORTUNISTIC


async def starttls(postfix: PostfixServer, context: ssl.SSLContext) -> None:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.port, start_tls=False, timeout=30)
    await client.connect()
    try:
        await client.starttls(server_hostname="mx.remote.test", tls_context=context)
        assert (await client.noop()).code == 250
    finally:
        client.close()


def test_validated_tls_to_the_real_mx_refuses_a_bad_certificate(
    postfix: PostfixServer, test_ca: TestCA, rogue_ca: TestCA
) -> None:
    """What enforce means on the wire: Postfix's certificate from the test CA for
    mx.remote.test passes; the same Postfix with a rogue certificate is refused, while the
    opportunistic context (no policy) still talks to it."""
    validated = tls_context(TlsRequirement.VALIDATED, test_ca.ca_file)
    asyncio.run(starttls(postfix, validated))
    good_cert, good_key = postfix.certificate or ("", "")
    rogue_cert, rogue_key = rogue_ca.issue("mx.remote.test")
    postfix.postconf(smtpd_tls_cert_file=str(rogue_cert), smtpd_tls_key_file=str(rogue_key))
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(starttls(postfix, validated))
        asyncio.run(starttls(postfix, tls_context(TlsRequirement.OPPORTUNISTIC)))
    finally:
        postfix.postconf(smtpd_tls_cert_file=str(good_cert), smtpd_tls_key_file=str(good_key))
