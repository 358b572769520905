"""Scheduler fidelity beyond HTTP: its OIDC token passes the api's own verifier, Pub/Sub targets publish into
Google's Pub/Sub emulator, and a refused publish is retried as the job's retryConfig says."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest
from google.cloud import scheduler_v1

from common.gcp import clients
from common.gcp.idtokens import CertsCache, verify_id_token
from common.local.emulators.certs import CertsServer
from common.local.emulators.kit.clock import FrozenClock
from common.local.emulators.scheduler import SchedulerEmulator
from tests.emulators.helpers import Receiver

START = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
SA = "invoker@fidelity.iam.gserviceaccount.com"
AUD = "http://127.0.0.1:8080"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_job_oidc_token_passes_the_apis_verifier(receiver: Receiver) -> None:
    with SchedulerEmulator(clock=FrozenClock(START)) as emu:
        certs = CertsServer(emu.signer, host="127.0.0.1", port=0)
        certs.start()
        try:
            emu.engine.create_job(scheduler_v1.CreateJobRequest(parent="projects/f/locations/us-central1", job={
                "name": "projects/f/locations/us-central1/jobs/j", "schedule": "* * * * *",
                "http_target": {"uri": f"{receiver.url}/v1/jobs", "oidc_token": {
                    "service_account_email": SA, "audience": AUD}}}))  # fmt: skip
            (record,) = emu.advance(60)
            assert record.status == 200
            token = receiver.hits[0].headers["authorization"].removeprefix("Bearer ")
            identity = verify_id_token(token, audience=AUD, allowed=[SA], certs_url=certs.certs_url, cache=CertsCache())
        finally:
            certs.stop()
    assert (identity.kind, identity.name) == ("service_account", SA)


def test_a_pubsub_target_publishes_into_the_pubsub_emulator(google_emulators: dict[str, str], gcp: str) -> None:
    topic, sub = f"projects/{gcp}/topics/ticks", f"projects/{gcp}/subscriptions/ticks-pull"
    clients.publisher().create_topic(name=topic)
    clients.subscriber().create_subscription(request={"name": sub, "topic": topic})
    host = google_emulators["PUBSUB_EMULATOR_HOST"]
    with SchedulerEmulator(clock=FrozenClock(START), pubsub_emulator_host=host) as emu:
        parent = f"projects/{gcp}/locations/us-central1"
        job = {"schedule": "* * * * *", "retry_config": {"retry_count": 2, "min_backoff_duration": {"seconds": 10}}}
        emu.engine.create_job(scheduler_v1.CreateJobRequest(parent=parent, job={**job, "name": f"{parent}/jobs/tick",
            "pubsub_target": {"topic_name": topic, "data": b"tick", "attributes": {"source": "gdelt"}}}))  # fmt: skip
        emu.engine.create_job(scheduler_v1.CreateJobRequest(parent=parent, job={**job, "name": f"{parent}/jobs/lost",
            "pubsub_target": {"topic_name": f"projects/{gcp}/topics/missing", "data": b"x"}}))  # fmt: skip
        records = emu.advance(60)
        assert sorted((r.job.rsplit("/", 1)[1], r.status, r.attempt) for r in records) == [
            ("lost", 404, 1), ("tick", 200, 1)]  # fmt: skip
        retried = emu.advance(10)  # the refused publish is retried after min_backoff_duration
        assert [(r.job.rsplit("/", 1)[1], r.kind, r.attempt) for r in retried] == [("lost", "retry", 2)]
        lost = emu.engine.get_job(scheduler_v1.GetJobRequest(name=f"{parent}/jobs/lost"))
        assert lost.status.code == 5  # NOT_FOUND, from the emulator's 404
    deadline = time.monotonic() + 10
    received = []
    while not received and time.monotonic() < deadline:
        received = list(clients.subscriber().pull(request={"subscription": sub, "max_messages": 5}).received_messages)
    assert [(m.message.data, dict(m.message.attributes)) for m in received] == [(b"tick", {"source": "gdelt"})]
