"""Upstream faults, injected by the recorded-response server (``common/local/recorded.py`` fault rules).

Transient faults (429 with Retry-After, 500, 503, a response slower than the client's read timeout, a
connection reset mid-body) are retried: three quick tries inside a task (``common.sources.http``), then Cloud Tasks
retries the task with the queue's backoff. A fault that clears ends ``succeeded``: it is injected 4 times on
a GDELT download, so attempt 1 spends its three tries and attempt 2 succeeds after one more. A fault that
persists ends ``failed`` with kind ``transient`` and "gave up after 5 attempts" (UN Comtrade declares 5):
5 attempts x 3 tries = 15 injected.

Content faults (a truncated zip, an md5 mismatch, malformed JSON, an empty body, an oversized payload, a body
cut short with a Content-Length that agrees) are permanent: the job fails at once on attempt 1, with a
message that names the file and the problem, and writes no Parquet.

Every selected scenario is submitted at once (each on its own slot or commodity code, so the faults do not
interfere), then each test checks its job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import MAX_DOWNLOAD_BYTES, FaultStack, Spec, comtrade_spec, gdelt_spec

COMTRADE_PATH = "/comtrade/data/v1/get/C/A/HS"
Build = Callable[[FaultStack, str], tuple[Spec, list[dict[str, Any]]]]


@dataclass(frozen=True)
class Scenario:
    fault: str
    variant: str
    build: Build
    injected: int | None  # expected number of spoiled requests (None: not a replay rule)
    smoke: bool = False

    @property
    def key(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.fault} {self.variant}".lower()).strip("-")


def clears(rule: dict[str, Any]) -> Build:
    def build(fs: FaultStack, tag: str) -> tuple[Spec, list[dict[str, Any]]]:
        slot = fs.pools.take("plain")
        return gdelt_spec(slot, attempt=2), [{**rule, "path": fs.zip_path(slot), "times": 4, "tag": tag}]

    return build


def persists(rule: dict[str, Any], *message: str) -> Build:
    def build(fs: FaultStack, tag: str) -> tuple[Spec, list[dict[str, Any]]]:
        cmd = fs.cmd()
        spec = comtrade_spec(
            cmd, status="failed", kind="transient", message=("gave up after 5 attempts", *message), attempt=5
        )
        return spec, [{**rule, "path": COMTRADE_PATH, "query": {"cmdCode": cmd}, "tag": tag}]

    return build


def gdelt_content(rule: dict[str, Any] | None, pool: str, *message: str) -> Build:
    def build(fs: FaultStack, tag: str) -> tuple[Spec, list[dict[str, Any]]]:
        slot = fs.pools.take(pool)
        spec = gdelt_spec(slot, status="failed", kind="permanent", message=(slot, *message), attempt=1)
        return spec, ([{**rule, "path": fs.zip_path(slot), "tag": tag}] if rule else [])

    return build


def comtrade_content(rule: dict[str, Any], *message: str) -> Build:
    def build(fs: FaultStack, tag: str) -> tuple[Spec, list[dict[str, Any]]]:
        cmd = fs.cmd()
        spec = comtrade_spec(cmd, status="failed", kind="permanent", message=message, attempt=1)
        return spec, [{**rule, "path": COMTRADE_PATH, "query": {"cmdCode": cmd}, "tag": tag}]

    return build


R429 = {"mode": "answer", "status": 429, "headers": {"Retry-After": "1"}, "body": "rate limit exceeded, retry later"}
R500 = {"mode": "answer", "status": 500, "body": "internal server error"}
R503 = {"mode": "answer", "status": 503, "body": "service unavailable"}
R503_NOW = {**R503, "headers": {"Retry-After": "0"}}  # retried at once in the task: a fast "gave up" for make test
SLOW = {"mode": "slow", "delay": 3}
RESET = {"mode": "reset"}
JSON = {"Content-Type": "application/json"}

SCENARIOS = [
    Scenario("upstream 429 + Retry-After", "clears", clears(R429), 4, smoke=True),
    Scenario("upstream 429 + Retry-After", "persists", persists(R429, "429", "rate limit exceeded"), 15),
    Scenario("upstream 500", "clears", clears(R500), 4),
    Scenario("upstream 500", "persists", persists(R500, "500", "internal server error"), 15),
    Scenario("upstream 503", "clears", clears(R503), 4),
    Scenario("upstream 503", "persists", persists(R503, "503", "service unavailable"), 15),
    Scenario(
        "upstream 503 + Retry-After: 0", "persists", persists(R503_NOW, "503", "service unavailable"), 15, smoke=True
    ),
    Scenario("timeout (response > read timeout)", "clears", clears(SLOW), 4),
    Scenario("timeout (response > read timeout)", "persists", persists(SLOW, "timed out", "ReadTimeout"), 15),
    Scenario("connection reset mid-body", "clears", clears(RESET), 4, smoke=True),
    Scenario("connection reset mid-body", "persists", persists(RESET, "failed", "ReadError"), 15),
    Scenario("truncated zip", "published truncated", gdelt_content(None, "truncated", "corrupt zip"), None),
    Scenario(
        "md5 mismatch",
        "listed md5 differs",
        gdelt_content(None, "md5", "md5", "does not match the listed"),
        None,
        smoke=True,
    ),
    Scenario(
        "malformed JSON",
        "cut-off JSON answer",
        comtrade_content(
            {"mode": "answer", "status": 200, "headers": JSON, "body": '{"elapsedTime":"0.1 secs","count":2,"data":[{'},
            "not JSON",
        ),
        1,
        smoke=True,
    ),
    Scenario(
        "empty body",
        "download (200, 0 bytes)",
        gdelt_content({"mode": "answer", "status": 200, "body": ""}, "plain", "size 0 bytes does not match the listed"),
        1,
    ),
    Scenario(
        "empty body",
        "JSON API (200, 0 bytes)",
        comtrade_content({"mode": "answer", "status": 200, "headers": JSON, "body": ""}, "not JSON"),
        1,
    ),
    Scenario(
        "oversized payload",
        f"> TRIBUTARY_MAX_DOWNLOAD_BYTES={MAX_DOWNLOAD_BYTES}",
        gdelt_content(
            {"mode": "oversize", "bytes": 4 * MAX_DOWNLOAD_BYTES}, "plain", f"larger than the {MAX_DOWNLOAD_BYTES:,}"
        ),
        1,
        smoke=True,
    ),
    Scenario(
        "truncated body",
        "Content-Length agrees",
        gdelt_content({"mode": "truncate", "bytes": 200}, "plain", "size 200 bytes does not match the listed"),
        1,
    ),
]
BY_KEY = {s.key: s for s in SCENARIOS}
CASES = [pytest.param(s.key, marks=pytest.mark.faults, id=s.key) for s in SCENARIOS] + [
    pytest.param(f"smoke-{s.key}", id=f"smoke-{s.key}") for s in SCENARIOS if s.smoke
]


@dataclass
class Run:
    scenario: Scenario
    spec: Spec
    submitted: dict[str, Any]
    tag: str


@pytest.fixture(scope="module")
def upstream_runs(fault_stack: FaultStack, request: pytest.FixtureRequest) -> dict[str, Run]:
    """Install the faults of every selected case and submit all their jobs at once."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module and "case" in getattr(item, "callspec", None).params
    ]
    runs = {}
    for case in selected:
        scenario = BY_KEY[case.removeprefix("smoke-")]
        spec, rules = scenario.build(fault_stack, case)
        if rules:
            fault_stack.add_faults(*rules)
        runs[case] = Run(scenario, spec, fault_stack.submit(spec), case)
    return runs


@pytest.mark.parametrize("case", CASES)
def test_upstream_fault(case: str, upstream_runs: dict[str, Run], fault_stack: FaultStack) -> None:
    run = upstream_runs[case]
    fault_stack.wait_terminal(run.submitted["job_id"])
    injected = fault_stack.applied(run.tag) if run.scenario.injected is not None else 1
    figures = fault_stack.check(
        run.spec,
        run.submitted,
        fault=run.scenario.fault,
        variant=("smoke " if case.startswith("smoke-") else "") + run.scenario.variant,
        injected=injected,
    )
    if run.scenario.injected is not None:
        assert injected == run.scenario.injected, figures
    # one delivery per attempt; each but the last answered 503 so that Cloud Tasks retried it
    assert figures["deliveries"] == figures["attempt"], figures
    assert figures["rejected"] == figures["attempt"] - 1, figures
