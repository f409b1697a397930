"""The legal desk's HTTP API over real HTTP, on the listener the runtime serves: logins with
password and TOTP, cookies and CSRF, bearer tokens, every route and role (401s and 403s
included), the two-person rule with two real logins, export, download and verification."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from borderline.cli.legal_demo import MLAT_ORDER
from borderline.cloud import Cloud
from borderline.config import load_config
from borderline.staff import StaffRoster, parse_roles
from borderline.throttle import LoginThrottle
from tests.conftest import PASSWORD, RunningCloud, write_config
from tests.legal.conftest import STAFF_PASSWORD, deliver

ALICE = "alice@example.test"
BOB = "bob@example.test"
PRESERVATION = """reference = "PRES-1"
received = "2026-11-20"
[authority]
name = "FBI"
country = "US"
kind = "police"
[instrument]
type = "us_2703f_preservation"
issued_by = "prosecutor"
served_on = "us-custodian"
[scope]
accounts = ["bob@example.test"]
categories = ["content"]
"""


@dataclass
class Server:
    base: str
    running: RunningCloud
    secrets: dict[str, str]  # name -> TOTP secret

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60)

    def login(self, name: str, code: str | None = None) -> httpx.Client:
        """A browser-like session: the cookie a login sets, sent back by hand (httpx keeps
        Secure cookies for https only) and the CSRF token on every change."""
        client = self.anonymous()
        answer = client.post(
            "/legal/login",
            json={
                "name": name,
                "password": STAFF_PASSWORD,
                "code": code or pyotp.TOTP(self.secrets[name]).now(),
            },
        )
        assert answer.status_code == 200, answer.text
        session = answer.headers["set-cookie"].split(";")[0]
        client.headers["Cookie"] = session
        client.headers["X-CSRF-Token"] = answer.json()["csrf"]
        return client


STAFF = (
    ("Ada", "intake,legal-reviewer", "eu-dublin"),
    ("Ben", "security-reviewer", "eu-dublin"),
    ("Ida", "intake", "eu-dublin"),
    ("Aud", "auditor", "eu-dublin"),
    ("Cy", "intake,legal-reviewer", "us-east"),
    ("Mallory", "auditor", "eu-dublin"),
    ("Eve", "auditor", "eu-dublin"),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("legal-api")
    cloud = Cloud(load_config(write_config(root)))
    cloud.add_account(ALICE, "eu-dublin", PASSWORD)
    cloud.add_account(BOB, "us-east", PASSWORD)
    deliver(cloud, ALICE, "in scope", "2026-06-01T10:00:00")
    roster = StaffRoster.of(cloud.config)
    secrets = {
        name: roster.add(name, parse_roles(roles), region, STAFF_PASSWORD).totp_secret
        for name, roles, region in STAFF
    }
    roster.close()
    running = RunningCloud(cloud)
    assert running.runtime.office is not None
    # The same throttle as in production, with delays short enough for a test.
    running.runtime.office.logins = LoginThrottle(free=1, base_delay=0.01, max_delay=0.02)
    port = running.runtime.api[0].port
    yield Server(f"http://127.0.0.1:{port}", running, secrets)
    running.stop()
    cloud.close()


@pytest.fixture(scope="module")
def people(server: Server) -> dict[str, httpx.Client]:
    """Each person logged in once (a TOTP code is good once)."""
    return {name: server.login(name) for name, _, _ in STAFF if name not in ("Mallory", "Eve")}


def upload(client: httpx.Client, name: str, text: str) -> httpx.Response:
    return client.post("/legal/requests", files={"file": (name, text.encode())})


def test_login_cookie_and_throttle(server: Server) -> None:
    client = server.anonymous()
    answer = client.post(
        "/legal/login", json={"name": "Ada", "password": "wrong password", "code": "123456"}
    )
    assert answer.status_code == 401 and answer.json()["detail"] == "wrong name, password or code"
    assert "set-cookie" not in answer.headers
    statuses = [
        client.post(
            "/legal/login", json={"name": "Mallory", "password": "guess", "code": "000000"}
        ).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    # Locked out even with the right password: the guesser's (name, address) pair is refused.
    right = {"name": "Mallory", "password": STAFF_PASSWORD}
    code = pyotp.TOTP(server.secrets["Mallory"]).now()
    assert client.post("/legal/login", json={**right, "code": code}).status_code == 429

    eve = server.login("Eve")
    assert eve.headers["Cookie"].startswith("borderline_session=")
    me = eve.get("/legal/me").json()
    assert me["staff"]["name"] == "Eve" and me["csrf"] == eve.headers["X-CSRF-Token"]


def test_session_cookie_flags(server: Server, people: dict[str, httpx.Client]) -> None:
    client = server.anonymous()
    code = pyotp.TOTP(server.secrets["Ida"]).at(time.time() + 30)
    answer = client.post(
        "/legal/login", json={"name": "Ida", "password": STAFF_PASSWORD, "code": code}
    )
    flags = {f.strip().lower() for f in answer.headers["set-cookie"].split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags


def test_every_route_needs_a_person(server: Server) -> None:
    client = server.anonymous()
    spec = client.get("/openapi.json").json()
    routes = [
        (method, path)
        for path, item in spec["paths"].items()
        if path.startswith("/legal/") and path != "/legal/login"
        for method in item
    ]
    assert len(routes) >= 18
    for method, path in routes:
        url = path.replace("{request_id}", "1").replace("{region}", "eu-dublin")
        url = url.replace("{hold_id}", "1").replace("{notice_id}", "1")
        answer = client.request(method.upper(), url)
        assert answer.status_code == 401, (method, path, answer.text)
    bearer = server.anonymous()
    bearer.headers["Authorization"] = "Bearer bls.1.abc.def"
    assert bearer.get("/legal/requests").status_code == 401


def test_csrf_is_required_on_changes(server: Server, people: dict[str, httpx.Client]) -> None:
    ada = people["Ada"]
    without = httpx.Client(base_url=server.base, headers={"Cookie": ada.headers["Cookie"]})
    answer = upload(without, "order.toml", MLAT_ORDER.read_text())
    assert answer.status_code == 403 and "X-CSRF-Token" in answer.json()["detail"]
    assert without.get("/legal/requests").status_code == 200  # reading needs no token
    wrong = {"X-CSRF-Token": "forged"}
    assert without.post("/legal/tokens", json={}, headers=wrong).status_code == 403


def test_two_people_approve_export_download_and_verify(
    server: Server, people: dict[str, httpx.Client], tmp_path: Path
) -> None:
    ada, ben, ida, aud, cy = (people[n] for n in ("Ada", "Ben", "Ida", "Aud", "Cy"))
    bad = MLAT_ORDER.read_text().replace('issued_by = "judge"', 'issued_by = "mayor"')
    refused = upload(ida, "bad.toml", bad)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("bad.toml: instrument.issued_by: must be one of")
    assert upload(ida, "order.exe", "x").status_code == 422
    assert upload(ida, "big.toml", "#" * 300_000).status_code == 413
    assert upload(ben, "order.toml", MLAT_ORDER.read_text()).status_code == 403  # not intake

    created = upload(ida, "order.toml", MLAT_ORDER.read_text())
    assert created.status_code == 201, created.text
    view = created.json()
    rid = view["id"]
    assert "Basis" in view["explanation"]
    assert view["time_left"] is None or "left" in view["time_left"]
    assert [r["id"] for r in ada.get("/legal/requests").json()] == [rid]
    assert cy.get("/legal/requests").json() == []  # another custodian's people see nothing
    assert cy.get(f"/legal/requests/{rid}").status_code == 403
    assert cy.post(f"/legal/requests/{rid}/approve").status_code == 403
    assert ida.post(f"/legal/requests/{rid}/approve").status_code == 403  # intake only
    assert aud.post(f"/legal/requests/{rid}/approve").status_code == 403  # auditor reads
    assert aud.get(f"/legal/requests/{rid}").status_code == 200

    first = ada.post(f"/legal/requests/{rid}/approve")
    assert first.status_code == 200 and first.json()["state"] == "in_review"
    again = ada.post(f"/legal/requests/{rid}/approve")
    assert again.status_code == 422 and "already approved" in again.json()["detail"]
    assert ada.post(f"/legal/requests/{rid}/export", json={}).status_code == 409
    second = ben.post(f"/legal/requests/{rid}/approve")
    assert second.json()["state"] == "approved"
    assert [a["role"] for a in second.json()["approvals"]] == [
        "legal-reviewer",
        "security-reviewer",
    ]

    assert aud.post(f"/legal/requests/{rid}/export", json={}).status_code == 403
    exported = ben.post(f"/legal/requests/{rid}/export", json={})
    assert exported.status_code == 200, exported.text
    (package,) = exported.json()["packages"]
    assert package["ok"] and package["region"] == "eu-dublin"
    assert cy.get(package["download"]).status_code == 403
    download = aud.get(package["download"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert f"{package['folder']}.zip" in download.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert f"{package['folder']}/manifest.json" in names
    data_dir = server.running.cloud.config.cloud.data_dir
    assert (data_dir / "eu-dublin" / "exports" / package["folder"]).is_dir()  # stays home

    checked = aud.post("/legal/verify", files={"file": ("p.zip", download.content)})
    assert checked.json() == {**checked.json(), "ok": True, "problems": []}
    tampered = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(download.content)) as source,
        zipfile.ZipFile(tampered, "w") as sink,
    ):
        for name in source.namelist():
            body = source.read(name)
            sink.writestr(name, body.replace(b"in scope", b"in scape"))
    problems = aud.post("/legal/verify", files={"file": ("p.zip", tampered.getvalue())}).json()
    assert not problems["ok"] and any("SHA-256 differs" in p for p in problems["problems"])
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as sink:
        sink.writestr("../../escape.txt", b"x")
    escaped = aud.post("/legal/verify", files={"file": ("p.zip", evil.getvalue())})
    assert escaped.status_code == 422 and "escapes" in escaped.json()["detail"]

    shown = aud.get(f"/legal/requests/{rid}").json()
    assert [a["action"] for a in shown["actions"]] == [
        "submit",
        "decide",
        "approve",
        "approve",
        "export",
    ]
    assert next(h for h in shown["history"] if h["state"] == "fulfilled")["actor"] == (
        "Ben (staff 2)"
    )
    # The public log: a commitment per step, and no staff name anywhere on it.
    log_dir = data_dir / "eu-dublin" / "log"
    public = b"".join(p.read_bytes() for p in log_dir.rglob("*") if p.is_file())
    assert b"staff-action" in public
    for name in (b"Ada", b"Ben", b"Ida"):
        assert name not in public

    closed = ada.post(f"/legal/requests/{rid}/close")
    assert closed.json()["state"] == "closed"
    notices = ida.get("/legal/notices").json()
    assert [n["account"] for n in notices] == [ALICE]
    assert aud.post(f"/legal/notices/{notices[0]['id']}/sent").status_code == 403
    sent = ida.post(f"/legal/notices/{notices[0]['id']}/sent")
    assert sent.status_code == 200 and sent.json()["sent_at"]
    assert ida.post(f"/legal/notices/{notices[0]['id']}/sent").status_code == 422
    assert ida.get("/legal/notices").json() == []
    assert len(ida.get("/legal/notices", params={"all": "true"}).json()) == 1
    assert ida.post("/legal/notices/999/sent").status_code == 404
    assert ada.get("/legal/requests/999").status_code == 404


def test_holds_extend_and_release(server: Server, people: dict[str, httpx.Client]) -> None:
    cy = people["Cy"]
    created = upload(cy, "preserve.toml", PRESERVATION)
    assert created.status_code == 201, created.text
    (hold,) = cy.get("/legal/holds").json()
    assert hold["account"] == BOB and hold["region"] == "us-east"
    assert people["Ada"].get("/legal/holds").json() == []  # the Irish custodian's regions only
    base = f"/legal/holds/us-east/{hold['id']}"
    too_late = cy.post(f"{base}/extend", json={"until": "2030-01-01T00:00:00Z"})
    assert too_late.status_code == 422 and "beyond the legal maximum" in too_late.json()["detail"]
    extended = cy.post(f"{base}/extend", json={"note": "renewed request"})
    assert extended.status_code == 200 and extended.json()["until"].startswith("2027-05-19")
    assert cy.post(f"{base}/extend", json={}).status_code == 422  # once only
    assert cy.post(f"{base}/release", json={"reason": ""}).status_code == 422
    released = cy.post(f"{base}/release", json={"reason": "withdrawn"})
    assert released.json() == {"region": "us-east", "id": hold["id"], "released": True}
    assert cy.get("/legal/holds").json() == []
    assert cy.post(f"{base}/release", json={"reason": "again"}).status_code == 404


def test_tokens_report_and_logout(server: Server, people: dict[str, httpx.Client]) -> None:
    aud = people["Aud"]
    issued = aud.post("/legal/tokens", json={"days": 1, "label": "ci"})
    assert issued.status_code == 200
    bearer = httpx.Client(
        base_url=server.base, headers={"Authorization": f"Bearer {issued.json()['token']}"}
    )
    assert bearer.get("/legal/me").json()["staff"]["name"] == "Aud"
    assert bearer.post("/legal/tokens", json={}).status_code == 403  # only from a login
    assert aud.post("/legal/tokens", json={"days": 365}).status_code == 422
    report = bearer.get(
        "/legal/report", params={"from": "2026-01-01", "to": "2026-12-31", "format": "json"}
    )
    assert report.status_code == 200
    data: dict[str, Any] = json.loads(report.text)
    assert {c["region"] for c in data["checkpoints"]} == {"us-east", "eu-dublin"}
    html = bearer.get("/legal/report", params={"from": "2026-01-01", "to": "2026-12-31"})
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    backwards = bearer.get("/legal/report", params={"from": "2026-12-31", "to": "2026-01-01"})
    assert backwards.status_code == 422
    gone = aud.post("/legal/logout")
    assert gone.status_code == 200
    assert aud.get("/legal/me").status_code == 401
