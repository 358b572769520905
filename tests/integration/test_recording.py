"""Record mode of the recorded-response server, against a local upstream on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from common.local.recorded import ReplayServer
from common.local.recording import parse_upstreams

ROOT = Path(__file__).resolve().parents[2]
KEY = "real-key-0123456789"


class Upstream:
    """A small API on 127.0.0.1: JSON per query, a key checked in the query or a header, a passing 503."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                split = urlsplit(self.path)
                upstream.calls[split.path] += 1
                query = dict(parse_qsl(split.query))
                if split.path.endswith("/busy"):
                    return self._send(503, b"try later", "text/plain")
                if query.get("api_key") != KEY and self.headers.get("Ocp-Apim-Subscription-Key") != KEY:
                    return self._send(401, b'{"error": "bad key"}', "application/json")
                body = json.dumps({"path": split.path, "series": query.get("series_id")}).encode()
                self._send(200, body, "application/json; charset=UTF-8")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.stop()


def all_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_recorded_answers_replay_offline_without_the_key(tmp_path: Path, upstream: Upstream) -> None:
    record = {"fred": f"{upstream.url}/api", "comtrade": upstream.url}
    with ReplayServer(tmp_path, record=record) as recorder:
        dff = httpx.get(f"{recorder.url}/fred/series/observations", params={"series_id": "DFF", "api_key": KEY})
        gdp = httpx.get(f"{recorder.url}/fred/series/observations", params={"series_id": "GDP", "api_key": KEY})
        trade = httpx.get(f"{recorder.url}/comtrade/data", headers={"Ocp-Apim-Subscription-Key": KEY})
        busy = httpx.get(f"{recorder.url}/fred/busy")
        unknown = httpx.get(f"{recorder.url}/nosuch/x")
    assert (dff.status_code, dff.json()) == (200, {"path": "/api/series/observations", "series": "DFF"})
    assert gdp.json()["series"] == "GDP" and trade.status_code == 200
    assert busy.status_code == 503 and unknown.status_code == 404
    routes = json.loads((tmp_path / "fred" / "_routes.json").read_text())
    assert sorted(r["query"].get("series_id", "") for r in routes) == ["DFF", "GDP"]  # not the 503
    assert KEY not in all_text(tmp_path)  # neither the query's key nor the header's is written

    calls = sum(upstream.calls.values())
    with ReplayServer(tmp_path) as replay:  # offline: any key, the recorded answer
        again = httpx.get(f"{replay.url}/fred/series/observations", params={"series_id": "GDP", "api_key": "x"})
        trade_again = httpx.get(f"{replay.url}/comtrade/data")
    assert (again.status_code, again.json(), again.headers["Content-Type"]) == (
        200,
        gdp.json(),
        "application/json; charset=UTF-8",
    )
    assert trade_again.json() == trade.json()
    assert sum(upstream.calls.values()) == calls


def test_recording_the_same_call_again_replaces_its_route(tmp_path: Path, upstream: Upstream) -> None:
    with ReplayServer(tmp_path, record={"fred": upstream.url}) as recorder:
        for _ in range(2):
            httpx.get(f"{recorder.url}/fred/obs", params={"series_id": "DFF", "api_key": KEY}).raise_for_status()
    assert len(json.loads((tmp_path / "fred" / "_routes.json").read_text())) == 1


def test_upstream_flags_are_checked() -> None:
    assert parse_upstreams(["fred=http://127.0.0.1:1/x/"]) == {"fred": "http://127.0.0.1:1/x"}
    with pytest.raises(ValueError, match="SOURCE=URL"):
        parse_upstreams(["fred"])


def test_the_command_records(tmp_path: Path, upstream: Upstream) -> None:
    argv = [sys.executable, "-m", "common.local.recorded", "--record", str(tmp_path), "--port", "0"]
    argv += ["--upstream", f"fred={upstream.url}"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+) recording into", line)
        assert m, line
        r = httpx.get(f"{m.group(1)}/fred/obs", params={"series_id": "UNRATE", "api_key": KEY}, timeout=10)
        assert r.json()["series"] == "UNRATE"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "fred" / "_routes.json").is_file()


def test_the_command_wants_one_mode() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "common.local.recorded"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "one of --root DIR" in done.stderr and "Traceback" not in done.stderr
