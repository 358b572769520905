"""Authentication (common/runtime/auth.py): ID tokens and API keys, through the three functions in-process on the real
emulators, through the Cloud Tasks and Cloud Scheduler emulators, and the quirks that shaped it.

Tokens come from LocalSigner, whose public keys a CertsServer serves on loopback: the code under test is the
code that verifies Google's tokens in the cloud, pointed at another certs URL.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from werkzeug.serving import make_server

import common.gcp.idtokens
import common.runtime.api
import common.runtime.auth
import common.runtime.outcomes
import common.runtime.status
from common.core.events import Event, EventData, EventType
from common.core.identity import Unauthorized
from common.core.jobs import Job
from common.gcp import clients
from common.gcp.idtokens import verify_id_token
from common.gcp.tasks import TaskPayload, ensure_queue, queue_path
from common.local.emulators.certs import CertsServer
from common.local.emulators.oidc import LocalSigner
from common.local.recorded import ReplayServer
from common.local.samples import HERE as SAMPLES
from common.runtime.auth import hash_api_key, verify_internal
from common.settings import reset_settings
from common.sources import get_source
from tests.sources.gdelt_helpers import gdelt_replay_dir

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
SAMPLE = SAMPLES / "gdelt" / "20240115120000.export.CSV"
INVOKER = "tributary-invoker@tributary-test.iam.gserviceaccount.com"
STRANGER = "someone-else@other-project.iam.gserviceaccount.com"
API_URL = "https://tributary-api.example.test"  # Cloud Scheduler's audience: the api's base URL
INGEST_AUDIENCE = "http://127.0.0.1:8081/gdelt"  # the task URL: TRIBUTARY_INGEST_URL's default, for gdelt
STATUS_AUDIENCE = "https://tributary-status.example.test"  # the push subscription's oidc_token.audience
API_KEY = "k-right-0123456789"


@pytest.fixture(scope="module")
def signer() -> LocalSigner:
    return LocalSigner()


@pytest.fixture(scope="module")
def intruder() -> LocalSigner:
    return LocalSigner()


@pytest.fixture
def certs(signer: LocalSigner) -> Iterator[CertsServer]:
    with CertsServer(signer) as server:
        common.gcp.idtokens.CERTS.clear()
        yield server
    common.gcp.idtokens.CERTS.clear()


@pytest.fixture
def auth_on(monkeypatch: pytest.MonkeyPatch, certs: CertsServer) -> CertsServer:
    """Auth on, as in the cloud: the invoker allowed, the certs URL on loopback, one hashed API key."""
    for key, value in {
        "TRIBUTARY_AUTH": "on",
        "TRIBUTARY_OIDC_CERTS_URL": certs.certs_url,
        "TRIBUTARY_INVOKER_SERVICE_ACCOUNT": INVOKER,
        "TRIBUTARY_API_URL": API_URL,
        "TRIBUTARY_API_KEYS": hash_api_key(API_KEY) + ", plain-local-key",
    }.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return certs


class Spy:
    """Wraps what an entry point calls after the guard, to prove it never ran for a refused request."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real, self.calls = real, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged(signer: LocalSigner, intruder: LocalSigner) -> Callable[[str, str], str]:
    """Tokens that name our key id but are signed with another key."""

    def sign(audience: str, email: str) -> str:
        kid, intruder.kid = intruder.kid, signer.kid
        try:
            return intruder.sign_id_token(audience, email)
        finally:
            intruder.kid = kid

    return sign


#: Each bad credential: headers for (our signer, the intruder's, the audience), and the answer it gets.
BAD: dict[str, tuple[Callable[[LocalSigner, LocalSigner, str], dict[str, str]], int, str]] = {
    "missing token": (lambda s, i, aud: {}, 401, "missing_token"),
    "not a bearer token": (lambda s, i, aud: {"Authorization": "Basic dXNlcjpwdw=="}, 401, "malformed_token"),
    "not a JWT": (lambda s, i, aud: bearer("not.a.jwt"), 401, "malformed_token"),
    "expired": (lambda s, i, aud: bearer(s.sign_id_token(aud, INVOKER, now=time.time() - 7200)), 401, "expired_token"),
    "wrong audience": (lambda s, i, aud: bearer(s.sign_id_token("https://elsewhere.example", INVOKER)), 401,
                       "wrong_audience"),
    "wrong issuer": (lambda s, i, aud: bearer(s.sign_id_token(aud, INVOKER, iss="https://evil.example")), 401,
                     "wrong_issuer"),
    "unknown key": (lambda s, i, aud: bearer(i.sign_id_token(aud, INVOKER)), 401, "bad_signature"),
    "forged signature": (lambda s, i, aud: bearer(forged(s, i)(aud, INVOKER)), 401, "bad_signature"),
    "wrong service account": (lambda s, i, aud: bearer(s.sign_id_token(aud, STRANGER)), 403,
                              "service_account_not_allowed"),
    "email not verified": (lambda s, i, aud: bearer(s.sign_id_token(aud, INVOKER, email_verified=False)), 403,
                           "email_not_verified"),
}  # fmt: skip
CASES = list(BAD)


def case(name: str, signer: LocalSigner, intruder: LocalSigner, aud: str) -> tuple[dict[str, str], int, str]:
    make, status, code = BAD[name]
    return make(signer, intruder, aud), status, code


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]


# ---- api ------------------------------------------------------------------------------------------
@pytest.fixture
def api(gcp: str, tasks_emulator: Any, auth_on: CertsServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    ensure_queue(get_source("gdelt"))
    spy = Spy(common.runtime.api.handle)
    monkeypatch.setattr(common.runtime.api, "handle", spy)
    client = create_app("api", str(FUNCTIONS / "api.py")).test_client()
    client.spy = spy
    return client


def nothing_created() -> None:
    from common.gcp.firestore import list_jobs

    assert list(clients.tasks().list_tasks(parent=queue_path("gdelt"))) == []
    assert list_jobs(limit=10) == []


JOB = {"source": "gdelt", "params": {"slot": "20240115120000"}}


@pytest.mark.parametrize("name", CASES)
def test_api_refuses_bad_tokens_before_anything_runs(api: Any, signer, intruder, name: str) -> None:
    headers, status, code = case(name, signer, intruder, API_URL)
    if name == "missing token":
        status, code = 401, "missing_credentials"  # the public API also takes an API key
    assert_error(api.post("/v1/jobs", json=JOB, headers=headers), status, code)
    assert_error(api.get("/v1/jobs", headers=headers), status, code)
    assert api.spy.calls == 0
    nothing_created()


def test_api_accepts_an_allowed_token_and_api_keys(api: Any, signer: LocalSigner) -> None:
    token = signer.sign_id_token(API_URL + "/", INVOKER)  # a trailing slash on the audience is the same URL
    r = api.post("/v1/jobs", json=JOB, headers=bearer(token))
    assert r.status_code == 202, r.get_json()
    for key in (API_KEY, "plain-local-key"):
        again = api.post("/v1/jobs", json=JOB, headers={"X-API-Key": key})
        assert again.status_code == 202 and again.get_json()["job_id"] == r.get_json()["job_id"]
    assert api.get("/v1/jobs", headers={"X-API-Key": API_KEY}).status_code == 200
    assert len(list(clients.tasks().list_tasks(parent=queue_path("gdelt")))) == 1


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"X-API-Key": "k-wrong"}, "invalid_api_key"),
        ({"X-API-Key": ""}, "invalid_api_key"),
        ({"X-API-Key": hash_api_key(API_KEY)}, "invalid_api_key"),  # the stored hash is not a key
    ],
)
def test_api_refuses_missing_or_wrong_api_keys(api: Any, headers: dict[str, str], code: str) -> None:
    r = api.post("/v1/jobs", json=JOB, headers=headers)
    assert_error(r, 401, code)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.spy.calls == 0
    nothing_created()


def test_healthz_stays_open(api: Any) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/healthz/").status_code == 200
    assert_error(api.get("/v1/sources"), 401, "missing_credentials")


# ---- ingest ---------------------------------------------------------------------------------------
@pytest.fixture
def ingest(gcp: str, topic: tuple[str, str], auth_on: CertsServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    spy = Spy(common.runtime.outcomes.answer_task)
    monkeypatch.setattr(common.runtime.outcomes, "answer_task", spy)
    client = create_app("ingest", str(FUNCTIONS / "ingest.py")).test_client()
    client.spy = spy
    return client


def task_body(job_id: str = "gdelt-auth") -> bytes:
    return TaskPayload(job_id=job_id, source="gdelt", params={}).model_dump_json().encode()


def published(subscription: str) -> int:
    """How many events are waiting (a pull that returns at once; the flag is deprecated, the emulator honours it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        response = clients.subscriber().pull(
            request={"subscription": subscription, "max_messages": 10, "return_immediately": True}, timeout=5
        )
    return len(response.received_messages)


@pytest.mark.parametrize("name", CASES)
def test_ingest_refuses_bad_tokens_before_anything_runs(ingest: Any, topic, signer, intruder, name: str) -> None:
    headers, status, code = case(name, signer, intruder, INGEST_AUDIENCE)
    assert_error(ingest.post("/gdelt", data=task_body(), headers=headers), status, code)
    assert ingest.spy.calls == 0
    assert published(topic[1]) == 0


def test_ingest_token_for_another_source_is_refused(ingest: Any, signer: LocalSigner) -> None:
    token = signer.sign_id_token("http://127.0.0.1:8081/fred", INVOKER)
    assert_error(ingest.post("/gdelt", data=task_body(), headers=bearer(token)), 401, "wrong_audience")


def test_ingest_runs_a_task_with_a_valid_token(ingest: Any, topic, signer, tmp_path: Path, monkeypatch) -> None:
    root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
    with ReplayServer(root) as server:
        monkeypatch.setenv("TRIBUTARY_GDELT_BASE_URL", f"{server.url}/gdelt")
        reset_settings()
        r = ingest.post("/gdelt", data=task_body(), headers=bearer(signer.sign_id_token(INGEST_AUDIENCE, INVOKER)))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["records"] == 24 and ingest.spy.calls == 1


def test_unreachable_certs_answer_503_so_the_task_is_retried(ingest: Any, auth_on: CertsServer, signer) -> None:
    auth_on.fail_with = 500
    r = ingest.post("/gdelt", data=task_body(), headers=bearer(signer.sign_id_token(INGEST_AUDIENCE, INVOKER)))
    assert_error(r, 503, "auth_unavailable")
    assert ingest.spy.calls == 0


# ---- status ---------------------------------------------------------------------------------------
@pytest.fixture
def status(gcp: str, auth_on: CertsServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRIBUTARY_OIDC_AUDIENCE", STATUS_AUDIENCE)
    reset_settings()
    spy = Spy(common.runtime.status.handle_pubsub)
    monkeypatch.setattr(common.runtime.status, "handle_pubsub", spy)
    client = create_app("status", str(FUNCTIONS / "status.py"), "cloudevent").test_client()
    client.spy = spy
    return client


def push(client: Any, job_id: str, headers: dict[str, str]) -> Any:
    event = Event.make(EventType.started, EventData(job_id=job_id, source="gdelt"))
    ce = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/x"},
        {"message": {"data": base64.b64encode(event.to_bytes()).decode(), "messageId": "1"}, "subscription": "s"},
    )
    ce_headers, body = to_structured(ce)
    return client.post("/", headers={**ce_headers, **headers}, data=body)


def job_events(job_id: str) -> int:
    from common.gcp.firestore import reads

    return len(reads.job_events(job_id))


@pytest.mark.parametrize("name", CASES)
def test_status_refuses_bad_tokens_before_anything_runs(status: Any, signer, intruder, name: str) -> None:
    from common.gcp.firestore import create_job, get_job

    create_job(Job(job_id="gdelt-auth", source="gdelt"))
    headers, code_status, code = case(name, signer, intruder, STATUS_AUDIENCE)
    assert_error(push(status, "gdelt-auth", headers), code_status, code)
    assert status.spy.calls == 0
    assert get_job("gdelt-auth").status == "queued" and job_events("gdelt-auth") == 0


def test_status_applies_an_event_with_a_valid_token(status: Any, signer: LocalSigner) -> None:
    from common.gcp.firestore import create_job, get_job

    create_job(Job(job_id="gdelt-auth", source="gdelt"))
    r = push(status, "gdelt-auth", bearer(signer.sign_id_token(STATUS_AUDIENCE, INVOKER)))
    assert r.status_code == 200
    assert get_job("gdelt-auth").status == "running" and job_events("gdelt-auth") == 1


def test_status_without_a_configured_audience_refuses_every_token(status, signer, monkeypatch) -> None:
    monkeypatch.delenv("TRIBUTARY_OIDC_AUDIENCE")
    reset_settings()
    assert_error(push(status, "gdelt-x", bearer(signer.sign_id_token(STATUS_AUDIENCE, INVOKER))), 401, "wrong_audience")


# ---- through the emulators --------------------------------------------------------------------------
class Recorder:
    """WSGI middleware on a loopback server: records what each request carried and what it got."""

    def __init__(self, app: Any) -> None:
        self.app, self.seen = app, []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def record(status: str, headers: Any, *rest: Any) -> Any:
            with self.lock:
                self.seen.append(
                    {
                        "path": environ["PATH_INFO"],
                        "token": "HTTP_AUTHORIZATION" in environ,
                        "retry": environ.get("HTTP_X_CLOUDTASKS_TASKRETRYCOUNT"),
                        "status": int(status.split()[0]),
                    }
                )
            return start_response(status, headers, *rest)

        return self.app(environ, record)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], tuple[str, Recorder]]]:
    servers = []

    def start(app: Any) -> tuple[str, Recorder]:
        recorder = Recorder(app)
        server = make_server("127.0.0.1", 0, recorder, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", recorder

    yield start
    for server in servers:
        server.shutdown()


def test_tasks_emulator_tokens_pass_and_tokenless_tasks_are_refused_and_retried(
    gcp, topic, tasks_emulator, serve, monkeypatch, tmp_path: Path
) -> None:
    from google.cloud import tasks_v2
    from google.protobuf import duration_pb2

    with CertsServer(tasks_emulator.signer) as certs:
        common.gcp.idtokens.CERTS.clear()
        monkeypatch.setenv("TRIBUTARY_AUTH", "on")
        monkeypatch.setenv("TRIBUTARY_OIDC_CERTS_URL", certs.certs_url)
        monkeypatch.setenv("TRIBUTARY_INVOKER_SERVICE_ACCOUNT", INVOKER)
        root = gdelt_replay_dir(tmp_path / "replay", [SAMPLE])
        with ReplayServer(root) as upstream:
            monkeypatch.setenv("TRIBUTARY_GDELT_BASE_URL", f"{upstream.url}/gdelt")
            spy = Spy(common.runtime.outcomes.answer_task)
            monkeypatch.setattr(common.runtime.outcomes, "answer_task", spy)
            url, seen = serve(create_app("ingest", str(FUNCTIONS / "ingest.py")))
            monkeypatch.setenv("TRIBUTARY_INGEST_URL", url + "/{source}")
            reset_settings()
            parent = f"projects/{gcp}/locations/us-central1"
            queue = clients.tasks().create_queue(
                parent=parent,
                queue=tasks_v2.Queue(
                    name=f"{parent}/queues/auth-test",
                    retry_config=tasks_v2.RetryConfig(
                        max_attempts=3,
                        min_backoff=duration_pb2.Duration(nanos=100_000_000),
                        max_backoff=duration_pb2.Duration(nanos=200_000_000),
                    ),
                ),
            )

            def create(job_id: str, token: bool) -> None:
                http = tasks_v2.HttpRequest(url=f"{url}/gdelt", body=task_body(job_id))
                if token:  # as common.gcp.tasks.enqueue does when TRIBUTARY_INVOKER_SERVICE_ACCOUNT is set
                    http.oidc_token = tasks_v2.OidcToken(service_account_email=INVOKER)
                clients.tasks().create_task(parent=queue.name, task=tasks_v2.Task(http_request=http))

            create("gdelt-with-token", token=True)
            create("gdelt-without-token", token=False)
            assert tasks_emulator.wait_idle(20.0)
    with_token = [s for s in seen.seen if s["token"]]
    without = [s for s in seen.seen if not s["token"]]
    assert [s["status"] for s in with_token] == [200]
    assert [(s["status"], s["retry"]) for s in without] == [(401, "0"), (401, "1"), (401, "2")]
    assert spy.calls == 1, "only the task with a token ran"
    assert list(clients.tasks().list_tasks(parent=queue.name)) == [], "the refused task was dropped after 3 attempts"


def test_scheduler_emulator_tokens_reach_the_api(gcp, tasks_emulator, serve, monkeypatch) -> None:
    from google.cloud import scheduler_v1

    from common.gcp.clients import scheduler_client_for
    from common.local.emulators.scheduler import FrozenClock, SchedulerEmulator

    ensure_queue(get_source("gdelt"))
    signer = LocalSigner()
    with (
        CertsServer(signer) as certs,
        SchedulerEmulator(signer=signer, clock=FrozenClock(datetime(2024, 1, 1, tzinfo=UTC))) as emu,
    ):
        common.gcp.idtokens.CERTS.clear()
        url, _ = serve(create_app("api", str(FUNCTIONS / "api.py")))
        for key, value in {"TRIBUTARY_AUTH": "on", "TRIBUTARY_OIDC_CERTS_URL": certs.certs_url,
                           "TRIBUTARY_INVOKER_SERVICE_ACCOUNT": INVOKER, "TRIBUTARY_API_URL": url}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        reset_settings()
        client = scheduler_client_for(emu.address)
        parent = f"projects/{gcp}/locations/us-central1"
        for job_id, account in (("with-invoker", INVOKER), ("with-stranger", STRANGER), ("without-token", None)):
            target = scheduler_v1.HttpTarget(
                uri=f"{url}/v1/jobs",
                http_method=scheduler_v1.HttpMethod.POST,
                headers={"Content-Type": "application/json"},
                body=orjson.dumps(JOB),
            )
            if account:  # the audience is the api's base URL, as scheduler.sync sets it
                target.oidc_token = scheduler_v1.OidcToken(service_account_email=account, audience=url)
            job = scheduler_v1.Job(name=f"{parent}/jobs/{job_id}", schedule="* * * * *", http_target=target)
            client.create_job(parent=parent, job=job)
        fired = {r.job.rsplit("/", 1)[-1]: r.status for r in emu.advance(60)}
    assert fired == {"with-invoker": 202, "with-stranger": 403, "without-token": 401}
    from common.gcp.firestore import list_jobs

    assert [j.source for j in list_jobs(limit=10)] == ["gdelt"], "one job, from the allowed schedule only"


def test_the_pubsub_emulator_pushes_without_a_token(gcp: str, serve) -> None:
    """Why the local stack runs status with auth off (docs/google-quirks.md). If this starts failing, the
    emulator attaches tokens now: turn status auth on in devstack.LOCAL_AUTH."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    url, seen = serve(app)
    topic, sub = f"projects/{gcp}/topics/ingest-events", f"projects/{gcp}/subscriptions/push-oidc"
    clients.publisher().create_topic(name=topic)
    created = clients.subscriber().create_subscription(
        request={
            "name": sub,
            "topic": topic,
            "push_config": {
                "push_endpoint": f"{url}/{topic}",
                "oidc_token": {"service_account_email": INVOKER, "audience": STATUS_AUDIENCE},
            },
        }
    )
    assert created.push_config.oidc_token.audience == STATUS_AUDIENCE, "accepted and stored"
    clients.publisher().publish(topic, b"{}").result(timeout=10)
    deadline = time.monotonic() + 10
    while not seen.seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.seen and seen.seen[0]["token"] is False, "pushed, but without Authorization"


# ---- unit: verification, caching, modes ------------------------------------------------------------
def test_certs_are_fetched_once_and_cached_within_the_ttl(auth_on: CertsServer, signer: LocalSigner) -> None:
    headers = {"authorization": f"Bearer {signer.sign_id_token(INGEST_AUDIENCE, INVOKER)}"}
    for _ in range(20):
        assert verify_internal(headers, audience=INGEST_AUDIENCE).name == INVOKER
    assert auth_on.hits["/oauth2/v3/certs"] == 1


def test_the_cache_honours_max_age_within_its_bounds(monkeypatch, certs: CertsServer, signer) -> None:
    now = [1000.0]
    monkeypatch.setattr(
        common.gcp.idtokens, "time", type("Clock", (), {"monotonic": lambda: now[0], "time": time.time})
    )
    cache = common.gcp.idtokens.CertsCache()
    certs.max_age = 300
    cache.get(certs.certs_url, max_ttl=60)  # our bound wins over Google's max-age
    now[0] += 59
    cache.get(certs.certs_url, max_ttl=60)
    assert cache.fetches == 1
    now[0] += 2
    cache.get(certs.certs_url, max_ttl=60)
    assert cache.fetches == 2
    certs.max_age = 0  # a shorter max-age wins, but never below CERTS_MIN_TTL
    now[0] += 61
    cache.get(certs.certs_url, max_ttl=60)
    now[0] += common.gcp.idtokens.CERTS_MIN_TTL - 1
    cache.get(certs.certs_url, max_ttl=60)
    assert cache.fetches == 3


def test_a_rotated_key_is_picked_up_by_a_refetch_at_most_every_interval(
    monkeypatch, certs: CertsServer, signer
) -> None:
    new_key = LocalSigner()
    token = new_key.sign_id_token(INGEST_AUDIENCE, INVOKER)
    cache = common.gcp.idtokens.CertsCache()

    def verify() -> str:
        return verify_id_token(token, audience=INGEST_AUDIENCE, allowed=[INVOKER], certs_url=certs.certs_url,
                               cache=cache).name  # fmt: skip

    with pytest.raises(Unauthorized, match="does not publish"):
        verify()
    certs.signers.append(new_key)  # Google publishes the new key
    with pytest.raises(Unauthorized):  # a refetch only every CERTS_REFRESH_INTERVAL: no fetch storm
        verify()
    assert cache.fetches == 1
    monkeypatch.setattr(common.gcp.idtokens, "CERTS_REFRESH_INTERVAL", 0.0)
    assert verify() == INVOKER and cache.fetches == 2


def test_the_v1_pem_certificate_shape_verifies_too(certs: CertsServer, signer: LocalSigner) -> None:
    token = signer.sign_id_token(INGEST_AUDIENCE, INVOKER)
    identity = verify_id_token(token, audience=INGEST_AUDIENCE, allowed=[INVOKER], certs_url=certs.pem_url)
    assert identity.kind == "service_account" and identity.claims["aud"] == INGEST_AUDIENCE


def test_unsigned_and_hmac_tokens_are_refused(certs: CertsServer) -> None:
    import jwt

    claims = {"iss": "https://accounts.google.com", "aud": INGEST_AUDIENCE, "email": INVOKER,
              "email_verified": True, "iat": int(time.time()), "exp": int(time.time()) + 60}  # fmt: skip
    for token in (jwt.encode(claims, None, algorithm="none"), jwt.encode(claims, "s" * 32, algorithm="HS256")):
        with pytest.raises(Unauthorized) as err:
            verify_id_token(token, audience=INGEST_AUDIENCE, allowed=[INVOKER], certs_url=certs.certs_url)
        assert err.value.code == "bad_signature"


def test_a_token_whose_signature_google_removed_is_refused_and_named(certs: CertsServer, signer) -> None:
    header_and_claims = signer.sign_id_token(INGEST_AUDIENCE, INVOKER).rsplit(".", 1)[0]
    with pytest.raises(Unauthorized, match="SIGNATURE_REMOVED_BY_GOOGLE") as err:
        verify_id_token(header_and_claims + ".SIGNATURE_REMOVED_BY_GOOGLE", audience=INGEST_AUDIENCE,
                        allowed=[INVOKER], certs_url=certs.certs_url)  # fmt: skip
    assert err.value.code == "bad_signature"


def test_auth_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.settings import settings

    assert not common.runtime.auth.auth_enabled(), "auto is off outside Google Cloud"
    monkeypatch.setenv("K_SERVICE", "tributary-api")  # set by Cloud Run and Cloud Functions
    assert common.runtime.auth.auth_enabled()
    monkeypatch.setenv("TRIBUTARY_AUTH", "off")
    reset_settings()
    assert not common.runtime.auth.auth_enabled() and common.runtime.auth.guard("ingest", "/gdelt", {}) is None
    monkeypatch.delenv("K_SERVICE")
    monkeypatch.setenv("TRIBUTARY_AUTH", "on")
    reset_settings()
    assert settings().auth == "on"
    denied = common.runtime.auth.guard("ingest", "/gdelt", {})
    assert denied is not None and denied[1] == 401 and denied[0]["error"]["code"] == "missing_token"


def test_new_key_prints_a_key_and_the_entry_that_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    common.runtime.auth.main(["new-key"])
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    key, entry = lines["key"].strip(), lines["entry"].strip()
    assert entry == hash_api_key(key) and key not in entry
    assert common.runtime.auth.verify_api_key(key, [entry]).name == "sha256:" + entry.removeprefix("sha256:")[:12]
    with pytest.raises(Unauthorized):
        common.runtime.auth.verify_api_key(key + "x", [entry])


def test_google_auth_verify_token_quirks(signer: LocalSigner) -> None:
    """Why common.runtime.auth does not call google.oauth2.id_token.verify_token as is (docs/security.md, Quirks)."""
    import json

    import jwt
    from google.oauth2 import id_token

    fetches = []

    def request(certs: dict[str, Any]) -> Callable[..., Any]:
        def call(url: str, method: str = "GET", **_: Any) -> Any:
            fetches.append(url)
            return type("R", (), {"status": 200, "data": json.dumps(certs).encode(), "headers": {}})()

        return call

    five_s_late = signer.sign_id_token(INGEST_AUDIENCE, INVOKER, now=time.time() - 3605)
    # 1. With a JWK set (Google's v3 URL) it goes through PyJWT: clock_skew_in_seconds is ignored...
    with pytest.raises(jwt.ExpiredSignatureError):
        id_token.verify_token(five_s_late, request(signer.jwks()), INGEST_AUDIENCE, "u", clock_skew_in_seconds=30)
    # ...while the v1 PEM shape honours it.
    id_token.verify_token(five_s_late, request(signer.pem_certs()), INGEST_AUDIENCE, "u", clock_skew_in_seconds=30)
    # 2. The JWK path raises PyJWT errors, which are not the ValueError the docstrings promise.
    wrong = signer.sign_id_token("https://elsewhere.example", INVOKER)
    with pytest.raises(jwt.InvalidAudienceError) as err:
        id_token.verify_token(wrong, request(signer.jwks()), INGEST_AUDIENCE, "u")
    assert not isinstance(err.value, ValueError)
    # 3. audience=None skips the check with PEM certs but fails every token with a JWK set.
    id_token.verify_token(wrong, request(signer.pem_certs()), None, "u")
    with pytest.raises(jwt.InvalidAudienceError):
        id_token.verify_token(wrong, request(signer.jwks()), None, "u")
    # 4. Every call fetches the keys again.
    assert len(fetches) == 5
