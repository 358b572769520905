"""The api under a real functions-framework process (gunicorn) on 127.0.0.1: oversized headers answer JSON."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from common.runtime.api.server import MAX_HEADER_BYTES, MAX_HEADERS

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served_api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "TRIBUTARY_AUTH": "off", "PYTHONPATH": str(REPO), "THREADS": "2"}
    ff = str(Path(sys.executable).parent / "functions-framework")
    cmd = [ff, "--target", "api", "--source", str(REPO / "functions" / "api.py"), "--host", "127.0.0.1"]
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"functions-framework did not start: {(tmp_path / 'api.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def json_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json", r.text[:300]
    assert r.json()["error"]["code"] == code


def test_oversized_headers_answer_json_431_not_gunicorn_s_html(served_api: str) -> None:
    # gunicorn alone answered these with an HTML 431, before the function ran.
    json_error(
        httpx.get(f"{served_api}/healthz", headers={"X-Big": "a" * (MAX_HEADER_BYTES + 1)}), 431, "headers_too_large"
    )
    many = {f"X-H{i}": "v" for i in range(MAX_HEADERS + 20)}
    json_error(httpx.get(f"{served_api}/healthz", headers=many), 431, "headers_too_large")
    json_error(httpx.get(f"{served_api}/healthz", headers={"X-Big": "a" * 1_000_000}), 431, "headers_too_large")


def test_a_header_over_gunicorn_s_default_but_within_the_api_s_limit_is_served(served_api: str) -> None:
    r = httpx.get(f"{served_api}/healthz", headers={"X-Big": "a" * 9000})
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_routing_edge_cases_answer_json_over_http(served_api: str) -> None:
    json_error(httpx.get(f"{served_api}/v1//jobs"), 404, "not_found")
    json_error(httpx.get(f"{served_api}/favicon.ico"), 404, "not_found")
    json_error(httpx.get(f"{served_api}/v1/{'x' * 60_000}"), 404, "not_found")


def test_a_request_gunicorn_cannot_parse_answers_json(served_api: str) -> None:
    host, port = served_api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /v1/jobs\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Content-Type: application/json" in head, answer[:300]
    assert orjson.loads(body)["error"]["code"] == "bad_request"


def test_the_cli_prints_a_backfill_plan_and_a_large_one_needs_confirm(served_api: str) -> None:
    from typer.testing import CliRunner

    from common.ops.cli import app

    runner = CliRunner()
    args = ["backfill", "reliefweb", "--start", "2020-01-01", "--end", "2020-12-31", "--api-url", served_api]
    plan = runner.invoke(app, [*args, "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "53 jobs" in plan.output and "--confirm" in plan.output and '"estimated_seconds": 5300' in plan.output
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "409 confirmation_required" in refused.output
    assert "Traceback" not in refused.output
