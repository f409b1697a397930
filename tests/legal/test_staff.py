"""Staff accounts: one person per name whatever its spelling, password + TOTP logins, keys
held encrypted by the employer's region, tokens, resets, and the two-person rule by account."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from borderline.cloud import Cloud
from borderline.legal import LegalDesk, LegalError
from borderline.staff import (
    AuthenticationError,
    PermissionDenied,
    StaffError,
    StaffRoster,
    parse_roles,
    totp_code,
)

from .conftest import STAFF_PASSWORD, Staff, enroll, request

LOOK_ALIKES = [
    "ada",  # case
    "ADA",
    "\uff21\uff24\uff21",  # fullwidth
    "\u0410da",  # Cyrillic A
    "Ad\u0430",  # Cyrillic a
    "  Ada  ",  # spacing
    "\U0001d400da",  # mathematical bold A
]


@pytest.mark.parametrize("variant", LOOK_ALIKES, ids=ascii)
def test_a_name_is_one_person_whatever_its_spelling(roster: StaffRoster, variant: str) -> None:
    roster.add("Ada", parse_roles("legal-reviewer"), "eu-dublin", STAFF_PASSWORD)
    with pytest.raises(StaffError, match="is staff 1, 'Ada'"):
        roster.add(variant, parse_roles("security-reviewer"), "eu-dublin", STAFF_PASSWORD)
    assert [m.name for m in roster.members()] == ["Ada"]
    assert roster.find(variant).id == 1  # a typed name finds the account, never a second one


@pytest.mark.parametrize("who", ["9" * 30, "0", str(1 << 63)])
def test_an_id_no_account_can_have_is_no_account(roster: StaffRoster, who: str) -> None:
    """A login or lookup by an id beyond SQLite's integers is an unknown account, not an
    OverflowError (the legal API's 500 that schemathesis found)."""
    roster.add("Ada", parse_roles("legal-reviewer"), "eu-dublin", STAFF_PASSWORD)
    with pytest.raises(StaffError, match="no staff account"):
        roster.find(who)


@pytest.mark.parametrize("name", ["Ada\u200b", "A\u200dda", "\u202eAda", "Ada\x00"], ids=ascii)
def test_names_with_invisible_characters_are_refused(roster: StaffRoster, name: str) -> None:
    with pytest.raises(StaffError, match="invisible character"):
        roster.add(name, parse_roles("auditor"), "eu-dublin", STAFF_PASSWORD)


def test_look_alike_reviewers_cannot_make_two_approvals(
    cloud: Cloud, roster: StaffRoster, desk: LegalDesk
) -> None:
    """The issue's attack: 'Ada', then 'ADA' in fullwidth letters, approving. The second
    account cannot exist, and one person cannot approve twice or in both reviewer roles."""
    ada = enroll(roster, "Ada", "intake,legal-reviewer", "eu-dublin")
    with pytest.raises(StaffError, match="is staff 1"):
        enroll(roster, "\uff21\uff24\uff21", "security-reviewer", "eu-dublin")
    record = desk.submit(request(), ada)
    desk.approve(record.id, ada)
    with pytest.raises(LegalError, match="already approved"):
        desk.approve(record.id, ada)
    other_legal = enroll(roster, "Bea", "legal-reviewer", "eu-dublin")
    with pytest.raises(LegalError, match="the second must come from a security-reviewer"):
        desk.approve(record.id, other_legal)
    assert desk.get(record.id).state == "in_review"


def test_login_needs_password_and_a_fresh_code(roster: StaffRoster) -> None:
    enrolled = roster.add("Ada", parse_roles("auditor"), "eu-dublin", STAFF_PASSWORD)
    secret = enrolled.totp_secret
    with pytest.raises(AuthenticationError, match="wrong name, password or code"):
        roster.login("Ada", "wrong password", totp_code(secret))
    with pytest.raises(AuthenticationError, match="wrong name, password or code"):
        roster.login("Ada", STAFF_PASSWORD, "000000" if totp_code(secret) != "000000" else "1")
    with pytest.raises(AuthenticationError, match="wrong name, password or code"):
        roster.login("Nobody", STAFF_PASSWORD, totp_code(secret))
    code = totp_code(secret)
    assert roster.login("ada", STAFF_PASSWORD, code).id == 1
    with pytest.raises(AuthenticationError):  # a code is good once
        roster.login("Ada", STAFF_PASSWORD, code)
    later = totp_code(secret, datetime.now(UTC) + timedelta(seconds=30))
    assert roster.login("1", STAFF_PASSWORD, later).id == 1
    roster.disable(1)
    with pytest.raises(AuthenticationError, match="disabled"):
        roster.login("Ada", STAFF_PASSWORD, totp_code(secret))


def test_secrets_are_in_the_key_region_and_encrypted(cloud: Cloud, roster: StaffRoster) -> None:
    enrolled = roster.add("Ada", parse_roles("auditor"), "eu-dublin", STAFF_PASSWORD)
    signer = roster.login("Ada", STAFF_PASSWORD, totp_code(enrolled.totp_secret))
    data_dir = cloud.config.cloud.data_dir
    secrets_db = data_dir / "eu-dublin" / "staff" / "secrets.sqlite"
    assert (secrets_db.stat().st_mode & 0o777) == 0o600
    assert not (data_dir / "us-east" / "staff" / "secrets.sqlite").exists()
    seed = signer._key.private_bytes_raw()
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert seed not in data and enrolled.totp_secret.encode() not in data, path
    with sqlite3.connect(data_dir / "staff.sqlite") as public:
        assert public.execute("SELECT custodian, key_region FROM staff").fetchall() == [
            ("ie-custodian", "eu-dublin")
        ]


def test_tokens_unlock_the_key_until_revoked(roster: StaffRoster) -> None:
    ada = enroll(roster, "Ada", "legal-reviewer", "eu-dublin")
    token = roster.create_token(ada, days=1, label="ci")
    via_token = roster.token_login(token)
    assert via_token.member == ada.member
    body = via_token.sign({"action": "test"}, "legal-reviewer")
    assert body.public_key == ada.member.public_key
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "bls.1.x.y", "nonsense"):
        with pytest.raises(AuthenticationError):
            roster.token_login(bad)
    with pytest.raises(AuthenticationError, match="password and code"):
        roster.change_password(via_token, "another password")
    roster.disable(ada.id)
    with pytest.raises(AuthenticationError):
        roster.token_login(token)


def test_reset_gives_a_new_key_and_keeps_the_old_on_record(roster: StaffRoster) -> None:
    ada = enroll(roster, "Ada", "legal-reviewer", "eu-dublin")
    token = roster.create_token(ada)
    old_key = ada.member.public_key
    renewed = roster.reset(ada.id, "a new password")
    assert renewed.member.public_key != old_key
    assert roster.known_keys(ada.id) == [old_key, renewed.member.public_key]
    with pytest.raises(AuthenticationError):
        roster.token_login(token)
    code = totp_code(renewed.totp_secret, datetime.now(UTC) + timedelta(seconds=30))
    assert (
        roster.login("Ada", "a new password", code).member.public_key == renewed.member.public_key
    )


def test_roles_and_employers_bound_every_step(desk: LegalDesk, staff: Staff) -> None:
    record = desk.submit(request(), staff.ada)
    with pytest.raises(PermissionDenied, match="needs the role intake"):
        desk.submit(request(reference="T-2"), staff.ben)
    with pytest.raises(PermissionDenied, match="served on ie-custodian; Cy Attorney"):
        desk.approve(record.id, staff.cy)  # the US custodian's people do not answer for Ireland
    with pytest.raises(PermissionDenied, match="served on ie-custodian"):
        desk.view(record.id, staff.dee)
    assert [r.id for r in desk.requests(staff.dee)] == []
    assert [r.id for r in desk.requests(staff.ben)] == [record.id]
