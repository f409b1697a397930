"""The legal desk as its people reach it from a server: logins (throttled), sessions, bearer
tokens, where a server keeps the packages it exports, package verification against the keys
the directory publishes, and the transparency report. The HTTP API and the web console are
two faces of one office, so both apply the same rules."""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

from borderline.directory import DirectoryError
from borderline.law import LegalRequest, RequestFileError, load_request
from borderline.legal.desk import LegalDesk, package_name
from borderline.legal.package import MANIFEST, Verification, verify_package
from borderline.legal.records import LegalError, NotFoundError
from borderline.staff import (
    AuthenticationError,
    Signer,
    StaffRoster,
    StaffSession,
    StaffSessions,
)
from borderline.throttle import LoginThrottle

# The cookie of a console or API login (the session id; the session lives in memory).
SESSION_COOKIE = "borderline_session"
MAX_REQUEST_FILE = 256 * 1024
# Bounds on what a verification upload may unpack to.
MAX_PACKAGE_FILES = 100_000
MAX_PACKAGE_BYTES = 4 << 30


def uploaded_request(filename: str | None, data: bytes) -> LegalRequest:
    """A request file sent over HTTP, checked as `load_request` checks a file on disk, with the
    same messages naming the file as uploaded."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "request.toml").name)[:100]
    if not name.lower().endswith((".toml", ".json")):
        raise RequestFileError(f"{name}: a request file is .toml or .json")
    if len(data) > MAX_REQUEST_FILE:
        raise RequestFileError(f"{name}: larger than {MAX_REQUEST_FILE} bytes")
    with tempfile.TemporaryDirectory(prefix="borderline-intake-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            return load_request(path)
        except RequestFileError as exc:
            raise RequestFileError(str(exc).replace(str(path), name)) from exc


class LoginRefused(AuthenticationError):
    """Too many failed logins from this client for this name: try again later."""


class PackageArchiveError(LegalError):
    """An uploaded package archive is not a zip this desk can unpack safely."""


def trusted_verification(
    folder: Path,
    desk: LegalDesk,
    roster: StaffRoster | None = None,
    key: bytes | None = None,
) -> Verification:
    """Verify a package trusting only `key`, or else the key its region published in the
    directory; with a roster, the approvers' keys must be theirs."""
    region = _manifest_region(folder)
    if key is not None:
        trusted, trusted_as = [key], "the key given (--key)"
    else:
        try:
            trusted = [desk.cloud.directory.region_keys(region).signing_key]
            trusted_as = f"{region}'s key as published in the directory"
        except DirectoryError:
            trusted, trusted_as = [], f"a key {region!r} published in the directory (none is)"
    return verify_package(folder, trusted, trusted_as, roster.known_keys if roster else None)


def _manifest_region(folder: Path) -> str:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["region"])
    except (OSError, ValueError, KeyError, TypeError):
        return "(unknown region)"


@contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """A package zip unpacked into a private temporary folder: names that would escape it,
    links and archives too large or with too many files are refused."""
    with tempfile.TemporaryDirectory(prefix="borderline-verify-") as tmp:
        root = Path(tmp)
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
                if len(members) > MAX_PACKAGE_FILES:
                    raise PackageArchiveError(f"more than {MAX_PACKAGE_FILES} files")
                if sum(m.file_size for m in members) > MAX_PACKAGE_BYTES:
                    raise PackageArchiveError("larger than 4 GiB unpacked")
                for member in members:
                    if member.is_dir():
                        continue
                    target = (root / member.filename).resolve()
                    if not target.is_relative_to(root.resolve()):
                        raise PackageArchiveError(f"{member.filename!r} escapes the package")
                    if (member.external_attr >> 28) == 0o12:  # a symbolic link
                        raise PackageArchiveError(f"{member.filename!r} is a link")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(member) as source, target.open("wb") as sink:
                        while chunk := source.read(1 << 20):
                            sink.write(chunk)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PackageArchiveError(f"not a package zip: {exc}") from exc
        folders = [p for p in root.iterdir() if p.is_dir()]
        yield folders[0] if len(folders) == 1 and not (root / MANIFEST).exists() else root


class LegalOffice:
    """One server's legal desk: who is logged in, and what they may download."""

    def __init__(
        self,
        desk: LegalDesk,
        roster: StaffRoster,
        sessions: StaffSessions | None = None,
        logins: LoginThrottle | None = None,
    ) -> None:
        self.desk = desk
        self.roster = roster
        self.sessions = sessions or StaffSessions()
        self.logins = logins or LoginThrottle()

    def close(self) -> None:
        self.desk.close_records()
        self.roster.close()

    @property
    def data_dir(self) -> Path:
        return self.desk.cloud.config.cloud.data_dir

    async def login(self, who: str, password: str, code: str, client: str) -> StaffSession:
        """Password and TOTP, throttled per (name, client) as mail logins are."""
        name = " ".join(who.split()).casefold()[:200]
        if self.logins.locked(name, client):
            raise LoginRefused("too many failed logins: try again later")
        signer: list[Signer] = []

        def check() -> bool:
            try:
                signer.append(self.roster.login(who, password, code))
            except AuthenticationError:
                return False
            return True

        if not await self.logins.attempt(check, name, client):
            raise AuthenticationError("wrong name, password or code")
        return self.sessions.open(signer[0])

    def session(self, session_id: str) -> StaffSession | None:
        """A live session of a person who is still enabled."""
        session = self.sessions.get(session_id)
        if session is not None and not self.roster.get(session.signer.id).active:
            self.sessions.close(session_id)
            return None
        return session

    def bearer(self, token: str) -> Signer:
        return self.roster.token_login(token)

    def export_dir(self, region_id: str) -> Path:
        """Where a server writes a region's packages: in that region's own data (plaintext
        mail stays in its home region until someone downloads it)."""
        folder = self.data_dir / region_id / "exports"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def export(self, request_id: int, signer: Signer, confirmed: bool) -> dict[str, Path]:
        return self.desk.export(
            request_id, self.export_dir, signer, enforcing_state_confirmed=confirmed
        )

    def package(self, request_id: int, region_id: str, viewer: Signer) -> Path:
        record = self.desk.view(request_id, viewer)
        if region_id not in self.desk.cloud.regions:
            raise NotFoundError(f"no region {region_id!r} here")
        folder = self.export_dir(region_id) / package_name(record, region_id)
        if not folder.is_dir():
            raise NotFoundError(f"request {request_id} has no package from {region_id}")
        return folder

    def zipped(self, folder: Path) -> Path:
        """The package as a zip (0600, beside it), for download; the caller removes it."""
        fd, name = tempfile.mkstemp(prefix=f".{folder.name}.", suffix=".zip", dir=folder.parent)
        os.close(fd)
        with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                zipped.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
        return Path(name)

    def verify(self, folder: Path) -> Verification:
        return trusted_verification(folder, self.desk, self.roster)

    def report(self, first: date, last: date, fmt: str) -> str:
        """The transparency report `borderline report` writes, at the logs' latest
        checkpoints (which the running server publishes every second)."""
        # Imported here: the report reads the legal records, so it depends on this package.
        from borderline.report import LogSnapshot, region_verifier_key
        from borderline.report.render import RENDERERS
        from borderline.report.sources import legal_requests
        from borderline.report.transparency import RegionLog, build_report

        if last < first:
            raise LegalError(f"to: {last} is before from: {first}")
        cloud = self.desk.cloud
        logs = []
        for rid, site in cloud.regions.items():
            key = region_verifier_key(site.origin, cloud.directory.region_keys(rid).signing_key)
            view = LogSnapshot.load(self.data_dir / rid / "log", key)
            logs.append(RegionLog.from_snapshot(rid, view, first, last))
        built = build_report(
            legal_requests(self.data_dir),
            logs,
            first,
            last,
            cloud.config.cloud.name,
            datetime.now(UTC),
        )
        return RENDERERS[fmt](built)
