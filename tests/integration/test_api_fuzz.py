"""Schemathesis against the API's own OpenAPI document: no 5xx and no response that breaks the schema.

The api function runs in-process (functions-framework's Flask app, called over WSGI) on the real
Firestore emulator and our Tasks emulator, so generated requests reach the real handlers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from common.runtime.api import ROUTER, ROUTES, document
from common.runtime.api.openapi import path_of

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
#: make test runs a fixed set of cases (reproducible CI); TRIBUTARY_FUZZ_RANDOM=1 explores with new seeds.
RANDOM = os.environ.get("TRIBUTARY_FUZZ_RANDOM") == "1"
EXAMPLES = 200 if RANDOM else 25
DOCUMENTED = {path_of(route.rule) for route in ROUTES}


@pytest.fixture
def api_schema(gcp: str, tasks_emulator):
    from common.gcp.tasks import ensure_queue
    from common.sources import all_sources

    for source in all_sources():
        ensure_queue(source)
    app = create_app("api", str(FUNCTIONS / "api.py"))
    # Every route of the table, the document's own included (schemathesis leaves out the one it loaded from).
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app).include(path=sorted(DOCUMENTED))


def test_api_conforms_to_its_openapi_document(api_schema) -> None:
    # schemathesis' pytest plugin (from_fixture) breaks on pytest 9 ("no attribute _nodeid"), so each
    # operation's strategy is run here with Hypothesis directly: the same cases and the same checks.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/jobs", "GET /v1/jobs/{job_id}", "POST /api/v1/ingest/run-daily"} <= labels, labels
    assert labels == {f"{route.method} {path_of(route.rule)}" for route in ROUTES}, labels
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=not RANDOM,
        )
        def check(case) -> None:
            # Every check but "a schema-valid request is accepted": params have rules JSON Schema cannot
            # state (a FRED window's order, GDELT's first slot), so the API rightly refuses some of them.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()


def test_the_document_is_served_and_describes_every_route(gcp: str) -> None:
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    served = client.get("/v1/openapi.json").get_json()
    assert served == document() | {} and served["openapi"].startswith("3.")
    # werkzeug answers HEAD wherever it answers GET: HEAD is GET without the body, not an operation of its own.
    routes = {(path_of(r.rule), method.lower()) for r in ROUTER.iter_rules() for method in r.methods - {"HEAD"}}
    documented = {(path, method) for path, operations in served["paths"].items() for method in operations}
    undocumented = routes - documented
    assert not undocumented, f"routes missing from the OpenAPI document: {undocumented}"
