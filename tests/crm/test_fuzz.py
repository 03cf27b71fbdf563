"""A bounded fuzz run of the OpenAPI schema (schemathesis): no input gives a 5xx.

Every operation gets ``MAX_EXAMPLES`` generated requests (schemathesis'
positive and negative modes: bodies, parameters and headers that fit the
schema and ones that break it), each sent with an administrator's key, a
dealer's key or no credential, against the real app on a store that holds a
small world of records. The counts by status are printed (``-s`` shows them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.crm.conftest import World

MAX_EXAMPLES = 25


def test_fuzzing_every_operation_finds_no_server_error(client: TestClient, world: World) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    callers = {"admin": world.admin, "dealer": world.dealer, "anonymous": {}}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1

        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases, who=st.sampled_from(sorted(callers)))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any], who: str) -> None:
            headers = {**dict(case.headers or {}), **callers[who]}
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} as {who}: "
                                f"{response.status_code} {response.text[:200]}")  # fmt: skip
            else:
                # Every error answer has the one error body.
                assert response.status_code < 400 or "error" in response.json()

        run()
    print(f"\nfuzz: {operations} operations, {sum(statuses.values())} requests, "
          f"by status {dict(sorted(statuses.items()))}")  # fmt: skip
    assert failures == []
    assert operations >= 35
    assert sum(statuses.values()) >= operations * 10
    assert any(200 <= status < 300 for status in statuses)
