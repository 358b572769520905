"""The operator console in a real browser: Debian's headless Chromium, driven by Playwright, against the local stack.

A job submitted from the CLI shows up on the jobs page and turns ``succeeded`` with no reload; the job page shows
its timeline and cost; the filters filter; every page loads without a console error. Screenshots of each page are
written to ``.tributary/console/`` (the README's image is one of them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.core.jobs import Job
from common.local.samples import materialize
from common.local.stack import Stack, StackConfig, client_env
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a quiet, offline browser (no sandbox: tests may run as root in a container).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = REPO / ".tributary" / "console"
TIMEOUT_MS = 150_000
PAGES = ("", "/sources", "/batches", "/deadletters", "/charts")
BUSY = "the server responded with a status of 503"


def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (bin/system-deps) for the console tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (it is in the dev extras: make test installs it)")
    return sync_playwright


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _playwright()
    tmp = tmp_path_factory.mktemp("console")
    s = Stack(
        StackConfig(state_dir=tmp / "stack", replay_dir=materialize(tmp / "replay"), auto_ports=True, scheduler=False)
    )
    state = s.up()
    yield state
    s.down()


@pytest.fixture(scope="module")
def browser(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_playwright = _playwright()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, context: Any, base: str) -> None:
        self.page = context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())  # the cancel button asks first

    def _console(self, message: Any) -> None:
        # A 503 is the emulators falling behind on a loaded machine (the api answers it with Retry-After): the
        # page shows it in its banner and polls again. Anything else is an error of the page.
        if message.type == "error" and BUSY not in message.text:
            self.errors.append(message.text)

    def open(self, path: str) -> Any:
        self.page.goto(f"{self.base}/ui{path}")
        self.page.wait_for_selector("#live:not(:empty)", timeout=TIMEOUT_MS)
        return self.page


@pytest.fixture
def page(browser: Any, stack: Any) -> Iterator[Page]:
    p = Page(browser, stack.endpoints["api_url"])
    yield p
    p.page.close()


def cli(stack: Any, *args: str) -> str:
    env = {**os.environ, "TRIBUTARY_API_URL": stack.endpoints["api_url"], "COLUMNS": "200"}
    tributary = shutil.which("tributary", path=str(Path(sys.executable).parent)) or "tributary"
    done = subprocess.run([tributary, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def submit_from_cli(stack: Any, source: str = "gdelt") -> str:
    import json

    return str(json.loads(cli(stack, "jobs", "submit", source, "--api-url", stack.endpoints["api_url"]))["job_id"])


def wait_terminal(stack: Any, job_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{stack.endpoints['api_url']}/v1/jobs/{job_id}", timeout=30).json()["status"]
        if status in ("succeeded", "failed", "cancelled"):
            return str(status)
        time.sleep(0.5)
    raise AssertionError(f"{job_id} did not finish in {timeout} s")


def test_a_job_submitted_from_the_cli_turns_succeeded_without_a_reload(page: Page, stack: Any) -> None:
    p = page.open("")
    p.evaluate("window.__noReload = true")
    job_id = submit_from_cli(stack)
    row = f'tr[data-job-id="{job_id}"]'
    p.wait_for_selector(row, timeout=TIMEOUT_MS)
    p.wait_for_selector(f'{row} [data-status="succeeded"]', timeout=TIMEOUT_MS)
    assert p.evaluate("window.__noReload") is True, "the page reloaded"
    assert "gdelt" in p.inner_text(row)
    SHOTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(SHOTS / "jobs.png"), full_page=False)

    # The job page: its timeline and its cost.
    p = page.open(f"/jobs/{job_id}")
    p.wait_for_selector('#timeline li[data-type="succeeded"]', timeout=TIMEOUT_MS)
    types = p.eval_on_selector_all("#timeline li[data-type]", "els => els.map(e => e.dataset.type)")
    assert types[0] == "started" and types[-1] == "succeeded", types
    assert p.inner_text('[data-field="status"]') == "succeeded"
    p.wait_for_selector("#cost .total", timeout=TIMEOUT_MS)
    assert p.inner_text("#cost .total").startswith("$")
    assert p.locator("#cost tbody tr").count() >= 8, "a line per kind of usage"
    p.screenshot(path=str(SHOTS / "job.png"), full_page=True)
    assert page.errors == []

    # The same cost in the API's answer and in the CLI.
    cost = httpx.get(f"{stack.endpoints['api_url']}/v1/jobs/{job_id}", timeout=30).json()["cost"]
    assert cost["usage"]["pubsub_messages"] == 2 and cost["usage"]["vcpu_seconds"] > 0, cost["usage"]
    printed = cli(stack, "jobs", "cost", job_id, "--api-url", stack.endpoints["api_url"])
    assert "Firestore document reads" in printed and f"{cost['total_usd']:.7f}" in printed


def test_filters_filter(page: Page, stack: Any) -> None:
    job_id = submit_from_cli(stack, "fred")
    p = page.open("")
    row = f'tr[data-job-id="{job_id}"]'
    p.wait_for_selector(row, timeout=TIMEOUT_MS)
    p.select_option('select[name="source"]', "gdelt")
    p.wait_for_selector(row, state="detached", timeout=TIMEOUT_MS)
    p.select_option('select[name="source"]', "fred")
    p.wait_for_selector(row, timeout=TIMEOUT_MS)
    final = wait_terminal(stack, job_id)
    p.select_option('select[name="status"]', final)
    p.wait_for_selector(row, timeout=TIMEOUT_MS)
    p.select_option('select[name="status"]', "queued")
    p.wait_for_selector(row, state="detached", timeout=TIMEOUT_MS)
    p.select_option('select[name="status"]', "")
    p.fill('input[name="q"]', job_id[-10:])
    p.wait_for_selector(row, timeout=TIMEOUT_MS)
    assert p.locator("#jobs tbody tr").count() == 1
    p.fill('input[name="q"]', "no-such-job")
    p.wait_for_selector(row, state="detached", timeout=TIMEOUT_MS)
    assert "fred" in p.url and "no-such-job" in p.url, "the filters are in the address, so it can be shared"
    assert page.errors == []


def _queued_job(stack: Any, job_id: str) -> None:
    """A job left queued with no task (nothing will run it): what cancel is for."""
    from common.gcp import firestore

    with client_env(stack.env):
        firestore.create_job(Job(job_id=job_id, source="fred", params={"series": ["DFF"]}))


def test_retry_and_cancel_buttons(page: Page, stack: Any) -> None:
    doc = httpx.get(f"{stack.endpoints['api_url']}/v1/openapi.json", timeout=30).json()
    paths = doc["paths"].items()
    has = {op: any(p.endswith(f"}}:{op}") and "post" in v for p, v in paths) for op in ("retry", "cancel")}
    job_id = "fred-console-cancel-me"
    _queued_job(stack, job_id)
    p = page.open(f"/jobs/{job_id}")
    cancel = p.locator('button[data-action="cancel"]')
    cancel.wait_for(timeout=TIMEOUT_MS)
    retry = p.locator('button[data-action="retry"]')
    if not has["cancel"]:
        assert cancel.is_disabled() and "no POST /v1/jobs/{id}:cancel" in p.inner_text(".actions")
        assert retry.is_disabled() and "no POST /v1/jobs/{id}:retry" in p.inner_text(".actions")
        assert page.errors == []
        return
    assert retry.is_disabled() and "only a failed or cancelled job" in p.inner_text(".actions")
    cancel.click()
    p.wait_for_selector('[data-field="status"] [data-status="cancelled"]', timeout=TIMEOUT_MS)
    assert httpx.get(f"{stack.endpoints['api_url']}/v1/jobs/{job_id}", timeout=30).json()["status"] == "cancelled"
    p.wait_for_function("() => !document.querySelector('button[data-action=\"retry\"]').disabled", timeout=TIMEOUT_MS)
    assert p.locator('button[data-action="cancel"]').is_disabled()
    p.locator('button[data-action="retry"]').click()
    p.wait_for_selector('[data-field="run"]:has-text("2")', timeout=TIMEOUT_MS)
    after = httpx.get(f"{stack.endpoints['api_url']}/v1/jobs/{job_id}", timeout=30).json()
    assert after["run"] == 2 and after["status"] != "cancelled", after
    p.wait_for_selector("#runs", timeout=TIMEOUT_MS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(SHOTS / "job-actions.png"), full_page=True)
    assert page.errors == []


def test_pause_and_resume_a_queue(page: Page, stack: Any) -> None:
    p = page.open("/sources")
    row = 'tr[data-source="ofac"]'
    p.wait_for_selector(f'{row} [data-field="state"]:has-text("running")', timeout=TIMEOUT_MS)
    p.locator(f'{row} button[data-action="pause"]').click()
    p.wait_for_selector(f'{row} [data-status="paused"]', timeout=TIMEOUT_MS)
    queues = httpx.get(f"{stack.endpoints['api_url']}/v1/queues", timeout=30).json()["queues"]
    assert {q["source"]: q["state"] for q in queues}["ofac"] == "PAUSED"
    p.locator(f'{row} button[data-action="resume"]').click()
    p.wait_for_selector(f'{row} [data-field="state"]:has-text("running")', timeout=TIMEOUT_MS)
    assert page.errors == []


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_without_console_errors(page: Page, stack: Any, path: str) -> None:
    p = page.open(path)
    assert p.locator("#banner").is_hidden(), p.inner_text("#banner")
    name = path.strip("/") or "jobs-list"
    SHOTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert page.errors == []
