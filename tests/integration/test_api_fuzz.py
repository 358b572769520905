"""Schemathesis against the API's own OpenAPI document: no 5xx and no response that breaks the schema.

The api function runs in-process (functions-framework's Flask app, called over WSGI) on the real
Firestore emulator and our Tasks emulator, so generated requests reach the real handlers.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
import schemathesis
from functions_framework import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from common.runtime.api import ROUTER, ROUTES, document
from common.runtime.api.openapi import PATH_PARAM, path_of

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


#: Values the attack found answered 500 or accepted: Unicode digits, dates at the ends of the calendar,
#: numbers where booleans are due, control characters, and their like.
NASTY_TEXT = st.sampled_from(
    [
        "²", "٣", "\uff11\uff12", "-1", "1.0", "1e3", "99999999999999999999999", "", " ", "\n", "a\nb", "\x00",
        "0001-01-01", "9999-12-31", "0000-00-00", "10000-01-01", "2024-02-30", "2024-01-0²",
        "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2024-01-01T25:00", "true", "false", "1", "0",
        "gdelt", "reliefweb", "fred", "ofac", "x" * 300,
    ]
)  # fmt: skip
NASTY = st.one_of(
    NASTY_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(NASTY_TEXT, max_size=3),
    st.text(max_size=12),
)


def _fields(model) -> list[str]:
    return [] if model is None else [info.alias or name for name, info in model.model_fields.items()]


@st.composite
def nasty_requests(draw, route):
    path = route.rule
    for name in PATH_PARAM.findall(route.rule):
        path = path.replace(f"<{name}>", quote(str(draw(NASTY_TEXT)), safe="") or "x")
    query = {k: str(draw(NASTY)) for k in _fields(route.query) if draw(st.booleans())}
    headers = {k: str(draw(NASTY_TEXT)).replace("\n", " ").replace("\x00", "") for k in _fields(route.headers)}
    body = None
    if route.body is not None:
        body = {k: draw(NASTY) for k in _fields(route.body) if draw(st.booleans())}
        if "source" in body or draw(st.booleans()):
            body["source"] = draw(st.sampled_from(["gdelt", "reliefweb", "fred", "ofac", "comtrade", "worldbank"]))
    return path, query, headers, body, route.method


def test_nasty_values_never_answer_5xx_or_anything_but_json(api_schema) -> None:
    """Every parameter of every route, filled with the classes of value that once answered 500 (Unicode digits,
    extreme dates, integers as booleans, control characters): a JSON answer below 500, always."""
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    for route in ROUTES:

        @given(request=nasty_requests(route))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=not RANDOM)  # fmt: skip
        def check(request) -> None:
            path, query, headers, body, method = request
            r = client.open(path, method=method, query_string=query, headers=headers, json=body)
            assert r.status_code < 500, (method, path, query, body, r.status_code, r.data[:300])
            assert r.content_type == "application/json", (method, path, r.content_type)
            answer = r.get_json()
            if r.status_code >= 400:
                assert set(answer) == {"error"} and answer["error"]["code"], answer

        check()
