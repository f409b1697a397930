"""Composition root: builds custodians, regions and the directory from the config."""

from __future__ import annotations

import functools
import json
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline import accounts, observe
from borderline.accounts import AccountError
from borderline.config import Config, CustodianSection, RegionSection
from borderline.delivery import DeliveryPlanner
from borderline.directory import Directory, DirectoryError, RegionKeys, normalize_address
from borderline.law import Custodian as LawCustodian
from borderline.law import Region as LawRegion
from borderline.law import StaticFacts
from borderline.peering import QuestionDesk
from borderline.store import MailStore, StoreError, open_store
from borderline.throttle import LoginThrottle
from borderline.tlog import TransparencyLog
from borderline.tls import load_certificate, server_context
from borderline.vault import Vault

# Where the command line leaves an account deletion for the server that owns the region's
# log (the server holds it open and locked), and finds the outcome.
HANDOFF = "handoff"
HANDOFF_WAIT_SECONDS = 60.0
HANDOFF_REQUEST_MAX = 4096  # bytes: an address and some JSON
HANDOFFS_PER_PASS = 100


class Region:
    """One cell: its custodian, store, vault and transparency log, all under data_dir/<id>/."""

    def __init__(self, config: Config, section: RegionSection, directory: Directory) -> None:
        self.id = section.id
        self.section = section
        self.custodian: CustodianSection = config.custodian(section.custodian)
        self.domains = config.cloud.domains
        self.addresses = config.addresses
        self.origin = f"{config.primary_domain}/{section.id}"
        self.host_name = config.host_name(section.id)
        self.root = config.cloud.data_dir / section.id
        self.root.mkdir(parents=True, exist_ok=True)
        self.log: TransparencyLog | None = None
        self.vault = Vault(
            section.id,
            self.root / "vault",
            self._open_log,
            lambda why, sealed: observe.key_release(section.id, why, sealed),
        )
        self.store: MailStore = open_store(
            section.store or self.root / "mail.sqlite", section.store_timeout
        )
        self.directory = directory
        self.planner = DeliveryPlanner(section.id, self.vault, directory)
        # One per region, shared by IMAP and SMTP submission: a guess costs the same wherever
        # it is made.
        self.logins = LoginThrottle()
        # How often each address's account was deleted while this process ran, for IMAP
        # and submission alike: a session logged in before a deletion (its address may be a
        # new account's by now) sends and reads nothing more.
        self.deletions: Counter[str] = Counter()
        self.passwords = accounts.Passwords(accounts.PasswordCost.of(config.passwords))
        self.questions = QuestionDesk(self.vault, directory)
        directory.publish_region(
            RegionKeys(section.id, self.vault.sealing_public_key, self.vault.signing_public_key)
        )

    def new_log(self, signer: Ed25519PrivateKey) -> TransparencyLog:
        """The region's log, its last signed checkpoint also kept outside the log directory,
        published once the configured quorum of witnesses cosigned it. The caller closes it."""
        return TransparencyLog(
            self.root / "log",
            self.origin,
            signer,
            copy=self.root / "signed-checkpoint",
            witnesses=[w.key for w in self.section.witnesses],
            quorum=self.section.quorum,
        )

    def _open_log(self, signer: Ed25519PrivateKey) -> TransparencyLog:
        self.log = self.new_log(signer)
        return self.log

    @property
    def witness_dir(self) -> Path:
        """Where the key and state of the witness this region's operator may run live."""
        return self.root / "witness"

    @property
    def transparency_log(self) -> TransparencyLog:
        self.vault.access_log  # noqa: B018 - opens the log (and sets self.log) on first use
        assert self.log is not None
        return self.log

    @functools.cached_property
    def tls(self) -> ssl.SSLContext:
        """The TLS context of every listener of this region (created with a self-signed
        certificate on first use; replace tls/cert.pem and key.pem with real ones)."""
        return server_context(self.root / "tls", self.host_name)

    def reload_tls(self) -> None:
        """Pick up replaced certificate files for new connections (SIGHUP)."""
        if "tls" in self.__dict__:
            load_certificate(self.tls, self.root / "tls")

    def account_for(self, address: str) -> str | None:
        """The account mail to `address` is delivered to (an alias, a tag, a role address
        resolved), or None."""
        return self.directory.account_for(
            address,
            separator=self.addresses.separator,
            role_account=self.addresses.postmaster,
            domains=self.domains,
        )

    def check_password(self, address: str, password: str) -> bool:
        return self.passwords.check(self.store, address, password)

    def answer_password_question(self, wire: bytes) -> bytes:
        """Another region asks, for a client logging in there, whether the password of an
        account homed here is right (borderline.peering). The guess counts on this region's
        login throttle with the client's address, as if it had been made here. Blocking:
        argon2. Raises PeeringError for a question that does not verify."""
        question = self.questions.open(wire)
        address, ip = question.address, question.client_ip
        right = (
            not self.logins.locked(address, ip)
            and self.directory.home(address) == self.id
            and self.check_password(address, question.password)
        )
        if right:
            self.logins.succeeded(address, ip)
        else:
            self.logins.failed(address, ip)
        return self.questions.answer(question, right)

    def close(self) -> None:
        self.store.close()
        self.vault.close()
        if self.log is not None:
            self.log.close()


class Cloud:
    """All regions this process serves (all of them by default, one with --region)."""

    def __init__(self, config: Config, only: str | None = None) -> None:
        self.config = config
        config.cloud.data_dir.mkdir(parents=True, exist_ok=True)
        self.directory = Directory(config.cloud.data_dir / "directory.sqlite")
        sections = [config.region(only)] if only else config.regions
        self.regions: dict[str, Region] = {
            s.id: Region(config, s, self.directory) for s in sections
        }
        # Called with the address, on the deleting thread, once an account is deleted: the
        # IMAP and SMTP servers end its sessions (runtime.py wires them in).
        self.on_account_deleted: Callable[[str], None] | None = None

    def region(self, region_id: str) -> Region:
        try:
            return self.regions[region_id]
        except KeyError:
            raise AccountError(
                f"region {region_id!r} is not served here (regions: {', '.join(self.regions)})"
            ) from None

    def add_account(self, address: str, region_id: str, password: str) -> str:
        """Home an account: directory entry, data key and mailboxes in its region only."""
        address = accounts.new_account_address(
            address, self.config.cloud.domains, self.config.addresses.separator
        )
        region = self.region(region_id)
        password_hash = region.passwords.hash(password)
        try:
            self.directory.add(address, region_id)
        except DirectoryError as exc:
            raise AccountError(str(exc)) from exc
        try:
            region.vault.create_account_key(address)
            region.store.create_account(address, password_hash)
        except Exception:
            self.directory.remove(address)
            raise
        return address

    def _served_home(self, address: str) -> Region:
        region = self.home_region(address)
        if region is None:
            home = self.directory.home(address)
            raise AccountError(
                f"no account {address.lower()}"
                if home is None
                else f"{address.lower()} is homed in {home}, which this process does not serve"
            )
        return region

    def set_password(self, address: str, password: str) -> None:
        """Replace an account's password (in its home region's store only)."""
        region = self._served_home(address)
        region.store.set_password_hash(address, region.passwords.hash(password))

    def delete_account(self, address: str) -> int:
        """Delete an account: its mail, then its data key (so any copy of the ciphertext
        is unreadable; the deletion is logged naming no one: the entry's index is
        returned), then its directory entry and aliases. Refused, with nothing changed,
        while a preservation hold covers it. Run again after a crash, it finishes."""
        region = self._served_home(address)
        try:
            region.store.delete_account(address)
        except StoreError as exc:
            raise AccountError(f"not deleted: {exc}") from exc
        index = region.vault.destroy_account_key(address)
        self.directory.remove(address)
        address = normalize_address(address)  # as sessions know it, however it was typed
        region.deletions[address] += 1
        if self.on_account_deleted is not None:
            self.on_account_deleted(address)
        return index

    def hand_off_deletion(self, address: str, region_id: str) -> int:
        """Have the server that serves `region_id` delete the account (it owns the region's
        log); wait for its outcome. Refused, with nothing deleted, if the server does not
        take the request in time; if it took it and gives no outcome in time (it died
        mid-way), running the deletion again finishes it."""
        folder = self.config.cloud.data_dir / region_id / HANDOFF
        folder.mkdir(mode=0o700, exist_ok=True)
        request = folder / f"{secrets.token_hex(8)}.delete"
        staged = request.with_suffix(".new")
        staged.write_text(json.dumps({"address": address}))
        staged.rename(request)  # whole, or not there at all
        done = request.with_suffix(".done")
        deadline, taken = time.monotonic() + HANDOFF_WAIT_SECONDS, False
        while not done.exists():
            if time.monotonic() > deadline:
                if taken:
                    raise AccountError(
                        f"the server serving {region_id} took the deletion but gave no outcome;"
                        " run `account delete` again to finish it"
                    )
                try:
                    request.unlink()  # not taken: withdrawn, so it never happens later
                except FileNotFoundError:  # taken: the deletion is under way
                    deadline, taken = time.monotonic() + HANDOFF_WAIT_SECONDS, True
                    continue
                raise AccountError(
                    f"not deleted: the server serving {region_id} did not take the request"
                )
            time.sleep(0.1)
        outcome = json.loads(done.read_text())
        done.unlink()
        if "error" in outcome:
            raise AccountError(str(outcome["error"]))
        return int(outcome["index"])

    def answer_handoffs(self) -> list[str]:
        """Carry out the deletions the command line left for the regions served here (see
        `hand_off_deletion`); what was done, for the log. Blocking."""
        done = []
        for region in self.regions.values():
            folder = region.root / HANDOFF
            if not folder.is_dir():
                continue
            for request in sorted(folder.glob("*.delete"))[:HANDOFFS_PER_PASS]:
                taken = request.with_suffix(".taken")
                try:
                    request.rename(taken)
                except FileNotFoundError:  # withdrawn meanwhile
                    continue
                outcome = self._answer(taken)
                staged = request.with_suffix(".out")
                staged.write_text(json.dumps(outcome))
                staged.rename(request.with_suffix(".done"))
                taken.unlink()
                result = "refused" if "error" in outcome else "done"
                done.append(f"{region.id}: account deletion {result}")
        return done

    def _answer(self, taken: Path) -> dict[str, object]:
        try:
            with taken.open("rb") as file:
                data = file.read(HANDOFF_REQUEST_MAX + 1)
            if len(data) > HANDOFF_REQUEST_MAX:
                raise ValueError(f"over {HANDOFF_REQUEST_MAX} bytes")
            address = str(json.loads(data)["address"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return {"error": f"not deleted: unreadable request: {exc}"}
        try:
            return {"index": self.delete_account(address)}
        except AccountError as exc:
            return {"error": str(exc)}

    def add_alias(self, alias: str, target: str) -> str:
        """Deliver mail for `alias` to the account `target`, homed with it."""
        alias = accounts.new_account_address(
            alias, self.config.cloud.domains, self.config.addresses.separator
        )
        try:
            self.directory.add_alias(alias, target)
        except DirectoryError as exc:
            raise AccountError(str(exc)) from exc
        return alias

    def remove_alias(self, alias: str) -> None:
        try:
            self.directory.remove_alias(alias)
        except DirectoryError as exc:
            raise AccountError(str(exc)) from exc

    def facts(self) -> StaticFacts:
        """The law engine's facts: custodians and every region from the config (not only those
        served here), accounts from the directory."""
        return StaticFacts(
            [LawCustodian(c.id, c.name, c.jurisdiction) for c in self.config.custodians],
            [LawRegion(r.id, r.location, r.custodian) for r in self.config.regions],
            dict(self.directory.accounts()),
        )

    def home_region(self, address: str) -> Region | None:
        home = self.directory.home(address)
        return None if home is None else self.regions.get(home)

    def close(self) -> None:
        for region in self.regions.values():
            region.close()
        self.directory.close()

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
