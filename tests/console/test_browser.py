"""The console in Debian's Chromium, driven by Playwright: two staff members log in, one
records a request and approves, the other approves, exports and downloads the package, and
the download verifies against the region's published key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from borderline.cli.legal_demo import MLAT_ORDER
from borderline.cloud import Cloud
from borderline.staff import StaffRoster, parse_roles
from tests.conftest import RunningCloud
from tests.legal.conftest import STAFF_PASSWORD, deliver

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def test_two_people_approve_export_download_and_verify(
    browser: object, cloud: Cloud, running: RunningCloud, config_path: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, Page, expect

    assert isinstance(browser, Browser)
    deliver(cloud, "alice@example.test", "the shipment", "2026-06-01T10:00:00")
    roster = StaffRoster.of(cloud.config)
    secrets = {
        name: roster.add(name, parse_roles(roles), "eu-dublin", STAFF_PASSWORD).totp_secret
        for name, roles in (
            ("Ada Lovelace", "intake,legal-reviewer"),
            ("Ben Okafor", "security-reviewer"),
        )
    }
    roster.close()
    base = f"http://127.0.0.1:{running.runtime.api[0].port}"

    def log_in(name: str) -> Page:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{base}/console/")
        page.get_by_label("Staff id or name").fill(name)
        page.get_by_label("Password").fill(STAFF_PASSWORD)
        page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secrets[name]).now())
        page.get_by_label("Code from your authenticator app").press("Enter")  # the keyboard
        expect(page.get_by_role("heading", name="Requests")).to_be_visible()
        return page

    ada = log_in("Ada Lovelace")
    ada.get_by_role("link", name="Intake").click()
    ada.get_by_label("Request file (TOML or JSON)").set_input_files(str(MLAT_ORDER))
    ada.get_by_role("button", name="Record and decide").click()
    expect(ada.get_by_role("status")).to_have_text("The request is recorded and decided.")
    expect(
        ada.get_by_role("heading", name="3. alice@example.test / content: DISCLOSE")
    ).to_be_visible()
    ada.get_by_role("button", name="Approve as legal-reviewer").click()
    expect(ada.get_by_role("status")).to_have_text("Your approval is recorded and signed.")
    ada.get_by_role("button", name="Approve as legal-reviewer").click()
    expect(ada.get_by_role("alert")).to_contain_text("has already approved request 1")

    ben = log_in("Ben Okafor")
    ben.get_by_role("link", name="1: IE-MLA-2026-0117").click()
    ben.get_by_role("button", name="Approve as security-reviewer").click()
    expect(ben.get_by_text("Ada Lovelace (staff 1) approved as legal-reviewer")).to_be_visible()
    ben.get_by_role("button", name="Export signed package").click()
    expect(ben.get_by_role("status")).to_have_text("The signed package is ready to download.")
    with ben.expect_download() as download_info:
        ben.get_by_role("link", name="Download the eu-dublin package").click()
    archive = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(archive)
    assert archive.name == "request-1-IE-MLA-2026-0117-eu-dublin.zip"

    verified = subprocess.run(
        [sys.executable, "-m", "borderline", "request", "verify", str(archive), "--json"],
        env={"PATH": "/usr/bin:/bin", "BORDERLINE_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
