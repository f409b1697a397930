"""The borderline.toml model: validated with pydantic, errors name the key and its line."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

JURISDICTION_CODE = re.compile(r"^[A-Z]{2}$")
REGION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class ConfigError(Exception):
    """A configuration problem, phrased for the operator who has to fix the file."""


class Listen(BaseModel):
    """A host:port listen address."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> Listen:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _listen(value: Any) -> Any:
    return Listen.parse(value) if isinstance(value, str) else value


ListenField = Annotated[Listen, BeforeValidator(_listen)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudSection(_Strict):
    name: str = "Borderline"
    domains: list[str] = Field(min_length=1)
    data_dir: Path = Path("data")
    max_message_size: int = Field(default=25 * 1024 * 1024, gt=0)
    relay_retry_window_seconds: int = Field(default=5 * 24 * 3600, gt=0)
    # IMAP passwords without TLS. Off, they are accepted only over TLS, whatever the
    # client's address: behind a local TLS proxy every client looks local. Demos and tests.
    allow_cleartext_login: bool = False

    @field_validator("domains")
    @classmethod
    def _lowercase_domains(cls, domains: list[str]) -> list[str]:
        for domain in domains:
            if "." not in domain or "@" in domain or " " in domain:
                raise ValueError(f"{domain!r} is not a domain name")
        return [d.lower() for d in domains]


class SmtpSection(_Strict):
    """Resource limits of every SMTP listener (each MX and submission port on its own)."""

    max_connections: int = Field(default=1000, gt=0)
    # Per IPv4 address or IPv6 /64.
    max_connections_per_ip: int = Field(default=50, gt=0)
    max_recipients: int = Field(default=1000, ge=100)  # RFC 5321 4.5.3.1.8: at least 100
    # RFC 5321 4.5.3.2: 5 minutes for each command, 3 for each block of data.
    command_timeout_seconds: float = Field(default=300, gt=0)
    data_timeout_seconds: float = Field(default=180, gt=0)
    # Per account, on submission (both ports of its home region together): what a stolen
    # password can send in an hour. Over it: 451 4.7.0.
    submission_messages_per_hour: int = Field(default=500, gt=0)
    submission_recipients_per_hour: int = Field(default=2000, gt=0)


class ImapSection(_Strict):
    """Connection caps of each region's IMAP listeners (plain and implicit TLS together)."""

    max_connections: int = Field(default=5000, gt=0)
    # Per IPv4 address or IPv6 /64.
    max_connections_per_ip: int = Field(default=100, gt=0)


class InboundSection(_Strict):
    """Sender authentication of mail from the Internet on every MX (docs/internet-mail.md)."""

    # SPF, DKIM, DMARC and ARC on every message the MX accepts; an Authentication-Results
    # header on each; DMARC p=reject refused (550 5.7.1), p=quarantine to Junk.
    authenticate: bool = True
    # The authserv-id of the header (RFC 8601 2.5); default: the cloud's first domain.
    authserv_id: str | None = None
    # ARC sealers (d= domains) whose passing chain forgives a DMARC failure (RFC 8617 7.2).
    trusted_arc_sealers: list[str] = []
    # Spam scoring by rspamd (its normal worker, e.g. "http://127.0.0.1:11333"); off unless
    # set. A score from spam_junk_score goes to Junk, from spam_reject_score is refused.
    rspamd_url: str | None = None
    rspamd_timeout_seconds: float = Field(default=15, gt=0, le=120)
    spam_junk_score: float = 6.0
    spam_reject_score: float = 15.0

    @model_validator(mode="after")
    def _spam_scores(self) -> InboundSection:
        if self.spam_junk_score > self.spam_reject_score:
            raise ValueError("spam_junk_score is more than spam_reject_score")
        url = self.rspamd_url
        if url is not None and not re.fullmatch(r"http://[^/:@\s]+(:[0-9]{1,5})?(/\S*)?", url):
            raise ValueError(f"rspamd_url {url!r} is not an http://host[:port] URL")
        return self


class AddressesSection(_Strict):
    """Which account an address delivers to, besides its own (README "Addresses")."""

    # The account that receives postmaster@ and abuse@ of every domain (RFC 5321 4.5.1,
    # RFC 2142) that has no account or alias of that name.
    postmaster: str | None = None
    # `alice+news@` is delivered to `alice@`; new account names may not contain it.
    # "" turns plus-addressing off.
    separator: Literal["+", "-", "_", "=", ""] = "+"


class DnsSection(_Strict):
    """The DNS servers every region asks, for sender authentication on the MX and for
    routing mail to the Internet (IP addresses) and their port; default: the system's
    resolvers (/etc/resolv.conf)."""

    servers: list[str] = []
    port: int = Field(default=53, gt=0, le=65535)

    @field_validator("servers")
    @classmethod
    def _ip_addresses(cls, servers: list[str]) -> list[str]:
        return [_ip_address(server) for server in servers]


# The keys [dns] replaced; still read, from either section (README "borderline.toml").
DEPRECATED_DNS_KEYS = {"dns_servers": "servers", "dns_port": "port"}


def _moved_dns_keys(data: dict[str, Any]) -> dict[str, Any]:
    """The raw config with [inbound] and [outbound] dns_servers/dns_port moved into [dns];
    refused when two of them disagree, since there is one resolver setting now."""
    dns = dict(data.get("dns") or {})
    moved = dict(data)
    named: dict[str, str] = {key: f"[dns] {key}" for key in dns}
    for section in ("inbound", "outbound"):
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        table = dict(table)
        for old, new in DEPRECATED_DNS_KEYS.items():
            if old not in table:
                continue
            value = table.pop(old)
            if new in dns and dns[new] != value:
                raise ValueError(
                    f"[{section}] {old} (deprecated: now [dns] {new}) differs from"
                    f" {named[new]}: set [dns] {new} once"
                )
            dns[new], named[new] = value, f"[{section}] {old}"
        moved[section] = table
    if dns:
        moved["dns"] = dns
    return moved


class OutboundSection(_Strict):
    """Mail to the Internet, sent from the sender's home region (docs/internet-mail.md)."""

    smtp_port: int = Field(default=25, gt=0, le=65535)  # of remote MX hosts
    mta_sts_port: int = Field(default=443, gt=0, le=65535)  # of MTA-STS policy hosts
    # Trust anchors for validated TLS (MTA-STS enforce); default: the system's.
    ca_file: Path | None = None
    # Loopback and private MX addresses: only for tests and closed networks. Off, a domain
    # cannot point this region's MTA at its own internal network.
    allow_private_addresses: bool = False
    connections_per_domain: int = Field(default=10, gt=0, le=100)
    connections_per_mx: int = Field(default=10, gt=0, le=100)
    max_connections: int = Field(default=100, gt=0, le=10_000)
    messages_per_connection: int = Field(default=100, gt=0, le=10_000)
    connect_timeout_seconds: float = Field(default=30, gt=0, le=300)
    first_retry_seconds: float = Field(default=300, gt=0)
    max_retry_seconds: float = Field(default=3600, gt=0)
    retry_window_seconds: float = Field(default=5 * 24 * 3600, gt=0)
    max_attempts: int = Field(default=200, gt=0, le=10_000)
    # One delay notice per message still queued after this long (RFC 3464 "delayed").
    delay_warning_seconds: float = Field(default=4 * 3600, gt=0)

    @model_validator(mode="after")
    def _retries(self) -> OutboundSection:
        if self.first_retry_seconds > self.max_retry_seconds:
            raise ValueError("first_retry_seconds is more than max_retry_seconds")
        return self


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


class CustodianSection(_Strict):
    id: str
    name: str
    jurisdiction: str

    @field_validator("jurisdiction")
    @classmethod
    def _iso_code(cls, value: str) -> str:
        if not JURISDICTION_CODE.match(value):
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code such as 'IE'")
        return value


class WitnessSection(_Strict):
    """A C2SP tlog-witness the region pushes each new checkpoint to."""

    url: str  # submission prefix: POST <url>/add-checkpoint
    key: str  # the witness's cosignature verifier key, <name>+<key id>+<key>
    monitoring: str | None = None  # monitoring prefix (GET <prefix>/<origin hash>/checkpoint)

    @field_validator("url", "monitoring")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return None if value is None else value.rstrip("/")

    @field_validator("key")
    @classmethod
    def _cosignature_key(cls, value: str) -> str:
        from borderline.tlog import TlogError, VerifierKey
        from borderline.tlog.note import COSIGNATURE_V1

        try:
            key = VerifierKey.parse(value)
        except TlogError as exc:
            raise ValueError(str(exc)) from exc
        if key.alg != COSIGNATURE_V1:
            raise ValueError("not a witness cosignature key (type 0x04)")
        return value


class RegionSection(_Strict):
    id: str
    location: str
    custodian: str
    smtp: ListenField
    submission: ListenField | None = None
    # Submission over implicit TLS (RFC 8314, port 465), beside STARTTLS on `submission`.
    submissions: ListenField | None = None
    imap: ListenField | None = None
    imaps: ListenField | None = None
    # The log API of a process that serves this region alone (`serve --region`);
    # a process serving every region uses [api] listen.
    api: ListenField | None = None
    store: str | None = None
    # The addresses the region's MX is reached at and its mail to the Internet leaves from:
    # its A/AAAA and SPF records (`borderline dns`).
    public_addresses: list[str] = []
    # The name this region's servers give themselves (SMTP banner, Received, DSNs, TLS
    # certificate); default <id>.<first cloud domain>.
    host_name: str | None = None
    witnesses: list[WitnessSection] = []
    # A checkpoint is published once this many witnesses cosigned it (default: 1 if any).
    witness_quorum: int | None = Field(default=None, ge=0)
    # Seconds a call may wait on the region's PostgreSQL store before it fails (451 / NO).
    store_timeout: float = Field(default=5.0, gt=0, le=300)

    @field_validator("id")
    @classmethod
    def _region_id(cls, value: str) -> str:
        if not REGION_ID.match(value):
            raise ValueError(f"{value!r}: use lowercase letters, digits and '-'")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        return CustodianSection._iso_code(value)

    @field_validator("public_addresses")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> list[str]:
        return [_ip_address(address) for address in addresses]

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("use a postgresql:// URL, or omit `store` for the SQLite default")
        return value

    @model_validator(mode="after")
    def _quorum(self) -> RegionSection:
        if self.witness_quorum is not None and self.witness_quorum > len(self.witnesses):
            raise ValueError(
                f"witness_quorum {self.witness_quorum} is more than the"
                f" {len(self.witnesses)} witnesses listed"
            )
        return self

    @property
    def quorum(self) -> int:
        return min(1, len(self.witnesses)) if self.witness_quorum is None else self.witness_quorum


class PasswordsSection(_Strict):
    """The argon2id cost of every password hash, accounts' and staff's: passes, memory
    (KiB) and lanes. The default is RFC 9106's second recommendation (64 MiB). A raised
    cost applies to each account's password at its next right login."""

    time_cost: Annotated[int, Field(ge=1, le=32)] = 3
    memory_kib: Annotated[int, Field(ge=8192, le=4194304)] = 65536
    parallelism: Annotated[int, Field(ge=1, le=64)] = 4


class ApiSection(_Strict):
    listen: ListenField = Listen(host="127.0.0.1", port=8080)


class LogSection(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "warning"
    # text: readable key=value lines; json: one JSON object per line (docs/operations.md).
    format: Literal["text", "json"] = "text"


class Config(_Strict):
    cloud: CloudSection
    custodians: list[CustodianSection] = Field(min_length=1)
    regions: list[RegionSection] = Field(min_length=1)
    api: ApiSection = ApiSection()
    log: LogSection = LogSection()
    smtp: SmtpSection = SmtpSection()
    imap: ImapSection = ImapSection()
    outbound: OutboundSection = OutboundSection()
    inbound: InboundSection = InboundSection()
    dns: DnsSection = DnsSection()
    addresses: AddressesSection = AddressesSection()
    passwords: PasswordsSection = PasswordsSection()

    @model_validator(mode="before")
    @classmethod
    def _deprecated_dns_keys(cls, data: Any) -> Any:
        return _moved_dns_keys(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _references(self) -> Config:
        custodian_ids = [c.id for c in self.custodians]
        if len(set(custodian_ids)) != len(custodian_ids):
            raise ValueError("custodians: ids must be unique")
        region_ids = [r.id for r in self.regions]
        if len(set(region_ids)) != len(region_ids):
            raise ValueError("regions: ids must be unique")
        for region in self.regions:
            if region.custodian not in custodian_ids:
                raise ValueError(
                    f"regions.{region.id}.custodian: {region.custodian!r} is not a custodian id"
                    f" (known: {', '.join(custodian_ids)})"
                )
        self._one_listener_per_address()
        return self

    def _one_listener_per_address(self) -> None:
        """Two listeners on one port fail at bind time, after half the server started: say
        so at load time instead. A wildcard host takes the port on every address."""
        taken: dict[int, list[tuple[str, str]]] = {}
        listeners = [("api.listen", self.api.listen)] + [
            (f"regions.{region.id}.{name}", address)
            for region in self.regions
            for name in ("smtp", "submission", "submissions", "imap", "imaps", "api")
            if (address := getattr(region, name)) is not None
        ]
        for key, address in listeners:
            for other_key, other_host in taken.get(address.port, []):
                if address.host == other_host or {address.host, other_host} & WILDCARD_HOSTS:
                    raise ValueError(
                        f"{key} and {other_key} both listen on port {address.port}"
                        f" ({address} and {other_host}:{address.port})"
                    )
            taken.setdefault(address.port, []).append((key, address.host))

    def host_name(self, region_id: str) -> str:
        """A region's DNS name: its SMTP banner, certificate, trace and DSN name."""
        named = next((r.host_name for r in self.regions if r.id == region_id), None)
        return named or f"{region_id}.{self.primary_domain}"

    def region(self, region_id: str) -> RegionSection:
        for region in self.regions:
            if region.id == region_id:
                return region
        raise ConfigError(f"no region {region_id!r} (known: {', '.join(self.region_ids)})")

    def custodian(self, custodian_id: str) -> CustodianSection:
        for custodian in self.custodians:
            if custodian.id == custodian_id:
                return custodian
        raise ConfigError(f"no custodian {custodian_id!r}")

    @property
    def region_ids(self) -> list[str]:
        return [r.id for r in self.regions]

    @property
    def primary_domain(self) -> str:
        return self.cloud.domains[0]


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line of a validation error's location: walks table headers then keys.

    tomllib keeps no positions, and no maintained TOML parser for 3.11 reports them for
    values, so this scans the text: enough to point an operator at the right line.
    """
    lines = text.splitlines()
    start = 0
    if loc and isinstance(loc[0], str):
        section = loc[0]
        rest = loc[1:]
        if rest and isinstance(rest[0], int):
            wanted, rest = rest[0], rest[1:]
            seen = -1
            for number, line in enumerate(lines):
                if line.strip() == f"[[{section}]]":
                    seen += 1
                    if seen == wanted:
                        start = number
                        break
            else:
                return None
        else:
            for number, line in enumerate(lines):
                if line.strip() == f"[{section}]":
                    start = number
                    break
        key = next((part for part in rest if isinstance(part, str)), None)
        if key is None:
            return start + 1
        for number in range(start + 1, len(lines)):
            stripped = lines[number].strip()
            if stripped.startswith("["):
                break
            if re.match(rf"{re.escape(key)}\s*=", stripped):
                return number + 1
        return start + 1
    return None


def parse_config(text: str, source: str = "borderline.toml") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            key = ".".join(str(part) for part in loc) or "(top level)"
            line = _line_of(text, loc)
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {key}: {error['msg']}")
        raise ConfigError("\n".join(problems)) from exc


def load_config(path: Path) -> Config:
    """Load a config file; a relative data_dir is taken relative to the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file (run `borderline init` to write one)") from exc
    config = parse_config(text, str(path))
    if not config.cloud.data_dir.is_absolute():
        cloud = config.cloud.model_copy(
            update={"data_dir": (path.parent / config.cloud.data_dir).resolve()}
        )
        config = config.model_copy(update={"cloud": cloud})
    return config


def example_config(
    data_dir: Path,
    base_port: int = 2500,
    domain: str = "example.test",
    stores: Mapping[str, str] | None = None,
    cleartext_login: bool = False,
) -> str:
    """A working two-region cloud: us-east (US custodian) and eu-dublin (Irish custodian).
    `stores` maps a region id to the PostgreSQL URL of its store (default: SQLite);
    `cleartext_login` lets IMAP clients log in without TLS (for demos and tests)."""

    def store(region: str) -> str:
        url = (stores or {}).get(region)
        return "" if url is None else f"\nstore = {json.dumps(url)}"

    cleartext = (
        "# IMAP logins without TLS: only for a demo or tests on this machine.\n"
        "allow_cleartext_login = true\n"
        if cleartext_login
        else ""
    )
    return f"""# Borderline cloud configuration. Each region is one data centre in one jurisdiction,
# run by one custodian: the legal entity that holds that region's keys.

[cloud]
name = "Borderline example cloud"
domains = ["{domain}"]
data_dir = "{data_dir}"
max_message_size = 26214400
{cleartext}
[[custodians]]
id = "us-custodian"
name = "Borderline US Inc."
jurisdiction = "US"

[[custodians]]
id = "ie-custodian"
name = "Borderline Ireland Ltd"
jurisdiction = "IE"

[[regions]]
id = "us-east"
location = "US"
custodian = "us-custodian"
smtp = "127.0.0.1:{base_port + 25}"
submission = "127.0.0.1:{base_port + 87}"
submissions = "127.0.0.1:{base_port + 65}"
imap = "127.0.0.1:{base_port + 43}"
imaps = "127.0.0.1:{base_port + 93}"
api = "127.0.0.1:{base_port + 81}"{store("us-east")}

[[regions]]
id = "eu-dublin"
location = "IE"
custodian = "ie-custodian"
smtp = "127.0.0.1:{base_port + 125}"
submission = "127.0.0.1:{base_port + 187}"
submissions = "127.0.0.1:{base_port + 165}"
imap = "127.0.0.1:{base_port + 143}"
imaps = "127.0.0.1:{base_port + 193}"
api = "127.0.0.1:{base_port + 181}"{store("eu-dublin")}

[api]
listen = "127.0.0.1:{base_port + 80}"
"""
