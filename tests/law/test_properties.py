"""Property test: any well-formed request on any day between 1990 and 2026 is decided without a
Cedar error, one decision per item, each naming its policies and carrying a consistent shape, and
the rules of the second review hold for all of them (a route on every refusal, 2713 cited for
every US order reaching data abroad, the statutory comity motion only for a qualifying foreign
government, nothing before the period's start disclosed)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.law import CATEGORIES, LawEngine, LegalRequest

from .conftest import ACCOUNTS, make_facts, make_request

ENGINE = LawEngine.load()
BOOK = ENGINE.book
ISSUERS = ["judge", "court", "investigating_judge", "prosecutor", "police", "agency"]
CUSTODIANS = ["us-custodian", "ie-custodian", "ch-custodian"]
TODAY = date(2026, 12, 1)


@st.composite
def requests(draw: st.DrawFn) -> tuple[LegalRequest, str, str]:
    day = date(1990, 1, 1) + timedelta(days=draw(st.integers(0, (TODAY - date(1990, 1, 1)).days)))
    spec = draw(st.sampled_from(sorted(BOOK.instruments.values(), key=lambda s: s.id)))
    if spec.issued_in == "*":
        countries = sorted(BOOK.jurisdictions)
    elif spec.issued_in in BOOK.blocs:
        countries = [c for c in BOOK.jurisdictions if BOOK.member_of(c, spec.issued_in, day)]
    else:
        countries = [spec.issued_in]
    accounts = draw(
        st.lists(
            st.sampled_from([*ACCOUNTS, "x@example.test"]), min_size=1, max_size=3, unique=True
        )
    )
    extra: dict[str, object] = {}
    if draw(st.booleans()):
        extra["max_penalty_years"] = draw(st.integers(0, 30))
    if draw(st.booleans()):
        extra["subject_residence"] = draw(st.sampled_from(["US", "IE", "FR", "CH", "DK"]))
    if draw(st.booleans()):
        extra["listed_offence"] = draw(st.sampled_from(sorted(BOOK.listed_offences)))
        extra["by_information_system"] = draw(st.booleans())
    if draw(st.booleans()):
        start = day + timedelta(days=draw(st.integers(-400, 400)))
        extra["scope"] = {"from": start.isoformat()}
    request = make_request(
        spec.id,
        draw(st.sampled_from(countries)),
        draw(st.sampled_from(ISSUERS)),
        draw(st.sampled_from(CUSTODIANS)),
        day.isoformat(),
        tuple(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))),
        accounts=tuple(accounts),
        emergency=draw(st.booleans()),
        offence=draw(st.sampled_from(["tax fraud", "theft", "terrorism", "narcotics"])),
        now=datetime.combine(TODAY, datetime.min.time(), UTC),
        **extra,
    )
    return request, draw(st.sampled_from(CUSTODIANS)), draw(st.sampled_from(CUSTODIANS))


@settings(max_examples=150, deadline=None)
@given(requests())
def test_every_request_is_decided_with_reasons(case: tuple[LegalRequest, str, str]) -> None:
    request, dublin_keys, zurich_keys = case
    decisions = ENGINE.decide(request, make_facts(dublin_keys, zurich_keys))
    scope = request.scope
    assert [(d.item.account, d.item.category) for d in decisions] == [
        (a, c) for a in scope.accounts for c in scope.categories
    ]
    us_order = request.authority.country == "US" and request.instrument.type != (
        "us_emergency_request"
    )
    for d in decisions:
        assert d.policy_ids
        assert (d.outcome == "no_data") == (d.item.account not in ACCOUNTS)
        assert (d.ground is not None) == (d.outcome in ("reject", "refer"))
        # Every refusal names the lawful route, or says plainly that none exists.
        assert (d.route is not None) == (d.outcome in ("reject", "refer"))
        if d.outcome not in ("disclose", "preserve"):
            assert not d.obligations and not d.deadlines
            continue
        for deadline in d.deadlines:
            assert deadline.due > d.served_at
        assert d.data_until == d.served_at
        assert scope.start is None or scope.start <= d.law_date
        assert d.location is not None
        abroad = d.location.jurisdiction != "US"
        cloud = d.law_date >= date(2018, 3, 23)
        assert (us_order and abroad and cloud) == any("18 U.S.C. 2713" in c for c in d.citations)
        if "us.cloud.comity_motion" in d.policy_ids:
            assert BOOK.member_of(d.location.jurisdiction, "CLOUD_QFG", d.law_date)
