"""schemathesis against the legal API's OpenAPI spec, on the running server: inputs made from
the spec (and mutated past it) never cause a 500, with or without a valid bearer token."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borderline.cloud import Cloud
from borderline.staff import StaffRoster
from borderline.throttle import LoginThrottle
from tests.conftest import RunningCloud
from tests.legal.conftest import enroll
from tests.legal.conftest import request as legal_request

EXAMPLES_PER_OPERATION = 15


def test_no_input_causes_a_server_error(cloud: Cloud, running: RunningCloud) -> None:
    roster = StaffRoster.of(cloud.config)
    ada = enroll(roster, "Ada", "intake,legal-reviewer", "eu-dublin")
    token = roster.create_token(ada)
    roster.close()
    office = running.runtime.office
    assert office is not None
    office.desk.submit(legal_request(), ada)  # something to act on: request 1
    # The production throttle, with delays short enough for hundreds of bad logins.
    office.logins = LoginThrottle(base_delay=0.001, max_delay=0.002)
    base = f"http://127.0.0.1:{running.runtime.api[0].port}"
    spec: dict[str, Any] = httpx.get(f"{base}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [
        op.ok() for op in schema.get_all_operations() if op.ok().path.startswith("/legal/")
    ]
    assert len(operations) >= 18
    failures: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(), authorized=st.booleans())
        def probe(case: schemathesis.Case, authorized: bool) -> None:
            headers = {"Authorization": f"Bearer {token}"} if authorized else {}
            response = case.call(base_url=base, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            assert response.status_code < 500, response.text

        probe()
    assert failures == []
