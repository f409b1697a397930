"""Property test: any well-formed request on any day between 1990 and 2035 is decided without a
Cedar error, one decision per item, each naming its policies and carrying a consistent shape."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from borderline.law import CATEGORIES, LawEngine, LegalRequest

from .conftest import ACCOUNTS, make_facts, make_request

ENGINE = LawEngine.load()
BOOK = ENGINE.book
ISSUERS = ["judge", "court", "investigating_judge", "prosecutor", "police", "agency"]
CUSTODIANS = ["us-custodian", "ie-custodian", "ch-custodian"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[LegalRequest, str, str]:
    day = date(1990, 1, 1) + timedelta(days=draw(st.integers(0, 365 * 45)))
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
    request = make_request(
        spec.id,
        draw(st.sampled_from(countries)),
        draw(st.sampled_from(ISSUERS)),
        draw(st.sampled_from(CUSTODIANS)),
        day.isoformat(),
        tuple(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True))),
        accounts=tuple(accounts),
        emergency=draw(st.booleans()),
        offence=draw(st.sampled_from(["fraud", "theft", "terrorism", "narcotics"])),
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
    for d in decisions:
        assert d.policy_ids
        assert (d.outcome == "no_data") == (d.item.account not in ACCOUNTS)
        assert (d.ground is not None) == (d.outcome in ("reject", "refer"))
        assert (d.route is not None) == (d.outcome == "refer")
        if d.outcome not in ("disclose", "preserve"):
            assert not d.obligations and not d.deadlines
        for deadline in d.deadlines:
            assert deadline.due > d.served_at
