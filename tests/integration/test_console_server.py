"""The console behind the api function: served at /ui, authenticated like the API, never framed or forged,
and never loaded by the api's cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from functions_framework import create_app

from common.runtime.auth import hash_api_key
from common.settings import reset_settings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
KEY = "k-console-0123456789"


@pytest.fixture
def client():
    return create_app("api", str(FUNCTIONS / "api.py")).test_client()


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/sources", "/ui/batches", "/ui/jobs/gdelt-x", "/ui/charts"])
def test_pages_are_html_with_a_strict_policy(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.content_type.startswith("text/html")
    policy = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "form-action 'none'" in policy
    assert b"http://" not in r.data and b"https://" not in r.data, "nothing from another origin"


def test_links_are_relative_so_a_path_prefix_keeps_working(client) -> None:
    assert b'src="ui/static/console.js"' in client.get("/ui").data
    assert b'src="./static/console.js"' in client.get("/ui/sources").data
    assert b'src="../static/console.js"' in client.get("/ui/jobs/gdelt-x").data


def test_static_files_and_nothing_else(client) -> None:
    js = client.get("/ui/static/console.js")
    assert js.status_code == 200 and js.content_type.startswith("text/javascript")
    assert b"http://" not in js.data.replace(b"http://www.w3.org/2000/svg", b"") and b"https://" not in js.data
    for path in ("/ui/static/../app.py", "/ui/static/page.html", "/ui/static/nope.js", "/ui/nope"):
        r = client.get(path)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found", path


def test_console_posts_are_json_from_its_own_origin(client) -> None:
    form = client.post("/ui/data/deadletters/x:replay", data="a=b", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    cross = client.post("/ui/data/deadletters/x:replay", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and cross.get_json()["error"]["code"] == "cross_site_request"
    assert client.get("/ui/data/deadletters/x:replay").status_code == 405


def test_a_cross_site_post_to_the_api_is_refused_before_anything_runs(client) -> None:
    r = client.post("/v1/jobs", json={"source": "gdelt"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "cross_site_request"
    same = client.post("/v1/jobs", json={"source": "nope"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 400, "the console's own calls go through"


def test_the_console_needs_the_same_credentials_as_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_AUTH", "on")
    monkeypatch.setenv("TRIBUTARY_API_KEYS", hash_api_key(KEY))
    reset_settings()
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    for path in ("/ui", "/ui/static/console.js", "/ui/data/sources"):
        r = client.get(path)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "missing_credentials", path
        assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/ui", headers={"X-API-Key": KEY}).status_code == 200


def test_the_api_cold_start_does_not_load_the_console() -> None:
    code = (
        "import sys; from functions_framework import create_app; "
        f"create_app('api', {str(FUNCTIONS / 'api.py')!r}); "
        "import json; lazy = ('common.runtime.console', 'common.core.cost'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(lazy))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded == [], "the console and the cost model load when asked for, not at the api's cold start"


def test_a_browser_at_the_root_is_sent_to_the_console_and_other_clients_get_json(client) -> None:
    browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 302 and browser.headers["Location"].endswith("ui/")
    other = client.get("/")
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "not_found"
