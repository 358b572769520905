"""Configured API keys are enforced by a real functions-framework api process wherever it runs (no K_SERVICE,
``TRIBUTARY_AUTH`` left at auto), or the api refuses to serve; and the local stack never turns them off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.local.emulators.certs import CertsServer
from common.local.emulators.oidc import LocalSigner
from common.local.ports import free_port
from common.local.processes import http_ready, wait_until
from common.runtime.auth import hash_api_key

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
KEY, OTHER_KEY = "k-right-0123456789", "k-other-0123456789"
INVOKER = "tributary-invoker@tributary-test.iam.gserviceaccount.com"
STRANGER = "someone-else@other-project.iam.gserviceaccount.com"


def start_api(tmp_path: Path, **env: str) -> Iterator[str]:
    port = free_port()
    child = {k: v for k, v in os.environ.items() if k not in ("K_SERVICE", "TRIBUTARY_AUTH")}
    child.update(env)
    argv = [str(Path(sys.executable).parent / "functions-framework"), "--source", str(FUNCTIONS / "api.py"),
            "--target", "api", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    log = tmp_path / f"api-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1.0).status_code > 0, "the api", 30.0, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def keyed_api(gcp: str, tmp_path: Path) -> Iterator[tuple[str, LocalSigner]]:
    signer = LocalSigner()
    with CertsServer(signer) as certs:
        port_env = {
            "TRIBUTARY_API_KEYS": f"{hash_api_key(KEY)},{hash_api_key(OTHER_KEY)}",
            "TRIBUTARY_OIDC_CERTS_URL": certs.certs_url,
            "TRIBUTARY_INVOKER_SERVICE_ACCOUNT": INVOKER,
        }
        for url in start_api(tmp_path, **port_env, TRIBUTARY_API_URL="http://api.example.test"):
            yield url, signer


def test_configured_keys_are_enforced_with_auth_left_at_auto(keyed_api) -> None:
    url, signer = keyed_api
    stored = hash_api_key(KEY)
    refused = {
        "no key": {},
        "a wrong key": {"X-API-Key": "k-wrong"},
        "the stored entry": {"X-API-Key": stored},
        "the stored digest": {"X-API-Key": stored.removeprefix("sha256:")},
        "an empty key": {"X-API-Key": ""},
        "another account's token": {
            "Authorization": f"Bearer {signer.sign_id_token('http://api.example.test', STRANGER)}"
        },
        "a token for another audience": {
            "Authorization": f"Bearer {signer.sign_id_token('http://elsewhere.test', INVOKER)}"
        },
    }
    for name, headers in refused.items():
        for method, path in (("GET", "/v1/jobs/gdelt-nope"), ("POST", "/v1/jobs"), ("GET", "/v1/sources")):
            r = httpx.request(method, url + path, headers=headers, json={"source": "gdelt"}, timeout=10)
            assert r.status_code in (401, 403), (name, method, path, r.status_code, r.text)
            assert r.json()["error"]["code"], name
    for key in (KEY, OTHER_KEY):
        r = httpx.get(f"{url}/v1/jobs/gdelt-nope", headers={"X-API-Key": key}, timeout=10)
        assert r.status_code == 404, r.text
    token = signer.sign_id_token("http://api.example.test", INVOKER)
    assert httpx.get(f"{url}/v1/jobs/gdelt-nope", headers={"Authorization": f"Bearer {token}"}).status_code == 404
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_keys_with_auth_off_make_the_api_refuse_everything(gcp: str, tmp_path: Path) -> None:
    for url in start_api(tmp_path, TRIBUTARY_AUTH="off", TRIBUTARY_API_KEYS=hash_api_key(KEY)):
        for path in ("/healthz", "/v1/jobs/gdelt-nope"):
            r = httpx.get(url + path, headers={"X-API-Key": KEY}, timeout=10)
            assert r.status_code == 503 and r.json()["error"]["code"] == "auth_misconfigured"
        assert not http_ready(f"{url}/healthz")(), "a stack or health check sees it as down"
