"""One scenario per emulator through Google's stock clients, over REST and over gRPC: both must pass it alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import jwt
import pytest
from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2

from common.local.emulators.oidc import LocalSigner
from common.local.emulators.scheduler import SchedulerEmulator
from common.local.emulators.tasks import TasksEmulator
from tests.emulators.helpers import Receiver, scheduler_client, tasks_client

PROJECT = "tributary-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SA = f"invoker@{PROJECT}.iam.gserviceaccount.com"
AUD = "https://ingest.example.test"
TRANSPORTS = ["rest", "grpc"]
# Over REST the stock clients raise by HTTP status only (docs/google-quirks.md): ALREADY_EXISTS is a Conflict
# (409) and FAILED_PRECONDITION an InvalidArgument's BadRequest (400). The tests use those common base classes.


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def verified(token_header: str, signer: LocalSigner) -> dict[str, object]:
    """The claims of ``Bearer <token>``, verified as the api verifies them (signature, audience, issuer)."""
    scheme, token = token_header.split(" ", 1)
    assert scheme == "Bearer"
    key = jwt.PyJWK(signer.jwks()["keys"][0]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=AUD, issuer="https://accounts.google.com")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cloud_tasks_scenario(transport: str, receiver: Receiver) -> None:
    with TasksEmulator(rest_port=0) as emu:
        client = tasks_client(transport, emu)
        assert LOCATION in [loc.location_id for loc in client.list_locations({"name": f"projects/{PROJECT}"}).locations]
        assert client.get_location({"name": PARENT}).location_id == LOCATION

        ingest, other = f"{PARENT}/queues/ingest", f"{PARENT}/queues/other"
        queue = client.create_queue(
            parent=PARENT,
            queue={"name": ingest, "retry_config": {"max_attempts": 3, "min_backoff": dt.timedelta(seconds=2)}},
        )
        assert queue.state == tasks_v2.Queue.State.RUNNING
        assert queue.rate_limits.max_dispatches_per_second == 500
        assert queue.retry_config.min_backoff == dt.timedelta(seconds=2)
        assert queue.retry_config.max_backoff == dt.timedelta(seconds=3600)
        client.create_queue(parent=PARENT, queue={"name": other})
        with pytest.raises(exceptions.Conflict):
            client.create_queue(parent=PARENT, queue={"name": other})
        with pytest.raises(exceptions.NotFound):
            client.get_queue(name=f"{PARENT}/queues/missing")
        with pytest.raises(exceptions.BadRequest):
            client.get_queue(name=f"{PARENT}/queues/not_a_queue_id")

        assert client.pause_queue(name=other).state == tasks_v2.Queue.State.PAUSED
        pages = client.list_queues(request={"parent": PARENT, "page_size": 1})
        assert [q.name for q in pages] == [ingest, other]  # two pages, followed by the pager
        paused = client.list_queues(request={"parent": PARENT, "filter": "state: PAUSED"})
        assert [q.name for q in paused] == [other]
        assert client.resume_queue(name=other).state == tasks_v2.Queue.State.RUNNING

        updated = client.update_queue(
            queue={"name": ingest, "rate_limits": {"max_dispatches_per_second": 10}},
            update_mask={"paths": ["rate_limits.max_dispatches_per_second"]},
        )
        assert updated.rate_limits.max_dispatches_per_second == 10
        assert updated.retry_config.max_attempts == 3

        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        task = client.create_task(
            request={
                "parent": ingest,
                "task": {
                    "name": f"{ingest}/tasks/part-1",
                    "schedule_time": later,
                    "http_request": {
                        "url": f"{receiver.url}/ingest",
                        "body": b'{"part": 1}',
                        "headers": {"Content-Type": "application/json"},
                        "oidc_token": {"service_account_email": SA, "audience": AUD},
                    },
                },
                "response_view": tasks_v2.Task.View.FULL,
            }
        )
        assert task.view == tasks_v2.Task.View.FULL and task.http_request.body == b'{"part": 1}'
        assert task.dispatch_deadline == dt.timedelta(minutes=10)
        assert client.get_task(name=task.name).http_request.body == b""  # BASIC leaves the body out
        assert [t.name for t in client.list_tasks(parent=ingest)] == [task.name]

        client.run_task(name=task.name)
        (hit,) = receiver.wait_for(1)
        assert (hit.method, hit.path, hit.body) == ("POST", "/ingest", b'{"part": 1}')
        assert hit.headers["x-cloudtasks-queuename"] == "ingest"
        assert hit.headers["x-cloudtasks-taskname"] == "part-1"
        assert hit.headers["x-cloudtasks-taskretrycount"] == "0"
        assert hit.headers["user-agent"] == "Google-Cloud-Tasks"
        assert verified(hit.headers["authorization"], emu.signer)["email"] == SA
        assert emu.wait_idle(5.0)
        with pytest.raises(exceptions.NotFound):  # a task that succeeded is deleted
            client.get_task(name=task.name)

        spare = client.create_task(parent=ingest, task={"schedule_time": later, "http_request": {"url": receiver.url}})
        client.delete_task(name=spare.name)
        client.create_task(parent=ingest, task={"schedule_time": later, "http_request": {"url": receiver.url}})
        assert "purge_time" in client.purge_queue(name=ingest)
        assert list(client.list_tasks(parent=ingest)) == []
        client.delete_queue(name=other)
        assert [q.name for q in client.list_queues(parent=PARENT)] == [ingest]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cloud_scheduler_scenario(transport: str, receiver: Receiver) -> None:
    with SchedulerEmulator(rest_port=0) as emu:
        client = scheduler_client(transport, emu)
        assert LOCATION in [loc.location_id for loc in client.list_locations({"name": f"projects/{PROJECT}"}).locations]
        assert client.get_location({"name": PARENT}).name == PARENT

        name = f"{PARENT}/jobs/nightly"
        job = client.create_job(
            parent=PARENT,
            job={
                "name": name,
                "schedule": "0 3 * * *",
                "time_zone": "Europe/Paris",
                "http_target": {
                    "uri": f"{receiver.url}/v1/jobs",
                    "http_method": scheduler_v1.HttpMethod.POST,
                    "body": b'{"source": "gdelt"}',
                    "headers": {"Content-Type": "application/json"},
                    "oidc_token": {"service_account_email": SA, "audience": AUD},
                },
                "retry_config": {"retry_count": 2},
                "attempt_deadline": dt.timedelta(seconds=30),
            },
        )
        assert job.state == scheduler_v1.Job.State.ENABLED
        assert job.retry_config.min_backoff_duration == dt.timedelta(seconds=5)
        assert job.http_target.headers["User-Agent"] == "Google-Cloud-Scheduler"
        assert "schedule_time" in job
        with pytest.raises(exceptions.Conflict):
            client.create_job(parent=PARENT, job=job)
        client.create_job(
            parent=PARENT, job={"name": f"{PARENT}/jobs/other", "schedule": "* * * * *", "pubsub_target": {
                "topic_name": f"projects/{PROJECT}/topics/t", "data": b"x"}},
        )  # fmt: skip
        listed = client.list_jobs(request={"parent": PARENT, "page_size": 1})
        assert [j.name for j in listed] == [name, f"{PARENT}/jobs/other"]
        assert client.get_job(name=name).time_zone == "Europe/Paris"

        updated = client.update_job(job={"name": name, "schedule": "30 4 * * *"}, update_mask={"paths": ["schedule"]})
        assert (updated.schedule, updated.time_zone) == ("30 4 * * *", "Europe/Paris")
        assert client.pause_job(name=name).state == scheduler_v1.Job.State.PAUSED
        with pytest.raises(exceptions.BadRequest):
            client.pause_job(name=name)
        assert client.resume_job(name=name).state == scheduler_v1.Job.State.ENABLED

        ran = client.run_job(name=name)
        (hit,) = receiver.wait_for(1)
        assert (hit.method, hit.path, hit.body) == ("POST", "/v1/jobs", b'{"source": "gdelt"}')
        assert hit.headers["x-cloudscheduler"] == "true"
        assert hit.headers["x-cloudscheduler-jobname"] == "nightly"
        assert dt.datetime.fromisoformat(hit.headers["x-cloudscheduler-scheduletime"]).tzinfo is not None
        assert hit.headers["content-type"] == "application/json"
        assert verified(hit.headers["authorization"], emu.signer)["email"] == SA
        assert ran.status.code == 0 and "last_attempt_time" in ran

        client.delete_job(name=name)
        with pytest.raises(exceptions.NotFound):
            client.get_job(name=name)
        with pytest.raises(exceptions.BadRequest):  # the REST client checks the name's shape, not its characters
            client.get_job(name=f"{PARENT}/jobs/not.a.job.id")
