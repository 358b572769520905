"""The fault-injection harness: the local stack with a fault-capable replay server, and the checks every
fault scenario must pass (see RELIABILITY.md).

For each job a scenario makes, :meth:`FaultStack.check` asserts:

- its terminal state, its error kind and a readable message;
- **no duplicate records**: the Parquet objects of the job's parts are counted (every file whose name
  starts with a part key, so a stray copy under another name would show) and their rows compared with
  the expected count, and no temporary file is left beside them;
- **no orphan**: the job is terminal and no task of it is left in its queue;
- **every event applied once**: the job's event markers (``markers.stored_markers``) are exactly the distinct event
  ids published for the job (an audit pull subscription on ``ingest-events`` sees every publish), and the
  job's fields equal what one application of those events gives (``apply_event`` folded over them, plus
  the completion that ``finish_if_complete`` derives for multi-part jobs).

It returns one row of figures for the matrix in RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq

from common.core.events import Event, EventData, EventType
from common.core.jobs import Job, apply_event
from common.core.warehouse import hive_partition
from common.gcp.firestore.markers import stored_markers
from common.local.samples import HERE as SAMPLES
from common.local.samples import gdelt_listing, zip_deterministic
from common.local.stack import Stack, StackConfig, client_env

#: The client read timeout of the functions under test (TRIBUTARY_HTTP_READ_TIMEOUT); a ``slow`` fault
#: beyond it is a timeout.
READ_TIMEOUT = 1.0
#: TRIBUTARY_MAX_DOWNLOAD_BYTES under test: an oversized payload is anything above it.
MAX_DOWNLOAD_BYTES = 64 * 1024
#: Queue retries made fast (the stock Tasks client updates them after the stack is up); max_attempts stays
#: what each source declares, because the ingest function gives up on the attempt its source declares last.
FAST_RETRY = {"min_backoff": 0.2, "max_backoff": 1.0, "max_doublings": 2}
QUEUES = ("gdelt", "comtrade")
WAIT = 90.0

GDELT_SAMPLE = SAMPLES / "gdelt" / "20240115120000.export.CSV"
GDELT_ROWS = sum(1 for line in GDELT_SAMPLE.read_bytes().splitlines() if line.strip())
#: GDELT 2.0 mentions (16 columns), written for these tests.
MENTIONS_ROWS = [
    f"{1000 + i}\t20240201000000\t20240201001500\t1\texample.org\thttps://example.org/{i}\t1\t-1\t10\t20\t1\t50\t"
    f"{1000 + i}\t-1.5\t\t"
    for i in range(5)
]
COMTRADE_ROWS = {
    reporter: len(orjson.loads((SAMPLES / "comtrade" / f"data_C_A_HS_2021_r{reporter}.json").read_bytes())["data"])
    for reporter in (156, 842)
}

#: Figures of every scenario checked in this session (written to RELIABILITY.md by conftest).
RESULTS: list[dict[str, Any]] = []

_DISPATCH = re.compile(
    r"(?P<dup>duplicate )?dispatch queue=(?P<queue>\S+) task=(?P<task>\S+) attempt=(?P<attempt>\d+) "
    r"status=(?P<status>\S+)"
)


def slots(day: str, count: int, start: int = 0) -> list[str]:
    """``count`` 15-minute slots of ``day`` (YYYYMMDD), from the ``start``-th."""
    return [f"{day}{i // 4:02d}{(i % 4) * 15:02d}00" for i in range(start, start + count)]


# ---- the replay directory ------------------------------------------------------------------------------


@dataclass
class Pools:
    """GDELT slots served by the replay directory, handed out one per job (job ids come from params)."""

    plain: list[str]
    two_streams: list[str]
    md5: list[str]
    truncated: list[str]

    def take(self, kind: str) -> str:
        pool: list[str] = getattr(self, kind)
        if not pool:
            raise RuntimeError(f"no {kind} GDELT slot left: raise the pool size in tests/faults/harness.py")
        return pool.pop(0)


def build_replay_dir(root: Path) -> Pools:
    """GDELT slots (events; some with mentions; some with a wrong listed md5; some published truncated), and
    the project's Comtrade samples."""
    pools = Pools(
        plain=slots("20240201", 64),
        two_streams=slots("20240202", 12),
        md5=slots("20240203", 6),
        truncated=slots("20240204", 4),
    )
    gdelt = root / "gdelt"
    csvs = root.parent / "csv"
    gdelt.mkdir(parents=True, exist_ok=True)
    csvs.mkdir(parents=True, exist_ok=True)
    zips: list[Path] = []
    for slot in [*pools.plain, *pools.two_streams, *pools.md5, *pools.truncated]:
        csv = csvs / f"{slot}.export.CSV"
        shutil.copyfile(GDELT_SAMPLE, csv)
        zips.append(gdelt / f"{csv.name}.zip")
        zip_deterministic(csv, zips[-1])
        if slot in pools.truncated:  # the publisher's file itself is cut: the listing agrees with it
            data = zips[-1].read_bytes()
            zips[-1].write_bytes(data[: len(data) // 2])
        if slot in pools.two_streams:
            mentions = csvs / f"{slot}.mentions.CSV"
            mentions.write_text("\n".join(MENTIONS_ROWS) + "\n")
            zips.append(gdelt / f"{mentions.name}.zip")
            zip_deterministic(mentions, zips[-1])
    lines = []
    for line in gdelt_listing(zips).splitlines():
        size, md5, url = line.split()
        if any(slot in url for slot in pools.md5):
            md5 = "0" * 32
        lines.append(f"{size} {md5} {url}")
    listing = "\n".join(lines) + "\n"
    (gdelt / "lastupdate.txt").write_text(listing)
    (gdelt / "masterfilelist.txt").write_text(listing)
    shutil.copytree(SAMPLES / "comtrade", root / "comtrade")
    return pools


# ---- what a job is expected to end as --------------------------------------------------------------


@dataclass
class Spec:
    """One job of a scenario and how it must end."""

    source: str
    params: dict[str, Any]
    #: Parquet object (relative to the data dir, without ".parquet") -> rows, once the job succeeded.
    parquet: dict[str, int]
    status: str = "succeeded"
    kind: str | None = None
    message: tuple[str, ...] = ()
    attempt: int | None = None
    min_attempt: int = 1


def gdelt_spec(slot: str, streams: tuple[str, ...] = ("events",), **kw: Any) -> Spec:
    day = hive_partition(f"{slot[:4]}/{slot[4:6]}/{slot[6:8]}")
    rows = {"events": GDELT_ROWS, "mentions": len(MENTIONS_ROWS)}
    parquet = {f"normalized/gdelt/{s}/{day}/{slot}.{s}": rows[s] for s in streams}
    params: dict[str, Any] = {"slot": slot}
    if streams != ("events",):
        params["streams"] = list(streams)
    return Spec("gdelt", params, parquet, **kw)


def comtrade_spec(cmd: str, reporters: tuple[int, ...] = (156,), **kw: Any) -> Spec:
    """An annual 2021 Comtrade job; ``cmd`` (a commodity code) makes it a job of its own and lets a fault
    rule match its calls (``query: {"cmdCode": cmd}``). One part per reporter."""
    from common.sources.base import Context, SourceState
    from common.sources.comtrade import Comtrade

    params = {"freq": "A", "reporters": list(reporters), "start": "2021", "cmd_codes": [cmd], "reporters_per_call": 1}
    source = Comtrade()
    ctx = Context(http=None, base_url="", workdir=Path("."), state=SourceState(), now=datetime.now(UTC))  # type: ignore[arg-type]
    parts = source.plan(source.validate_params(params), ctx)
    parquet = {
        f"normalized/comtrade/{p.stream}/{hive_partition(p.partition)}/{p.key}": COMTRADE_ROWS[
            int(p.params["query"]["reporterCode"])
        ]
        for p in parts
    }
    return Spec("comtrade", params, parquet, **kw)


# ---- the audit of published events ---------------------------------------------------------------


class Audit:
    """A pull subscription on ``ingest-events``: every event published, per job (first version of each id)."""

    def __init__(self, subscriber: Any, subscription: str) -> None:
        self.sub, self.name = subscriber, subscription
        self.events: dict[str, dict[str, Event]] = defaultdict(dict)
        self.messages: Counter[str] = Counter()
        self._lock = threading.Lock()

    def drain(self) -> None:
        """Pull (and ack) until nothing is left; bounded."""
        with self._lock:
            for _ in range(50):
                # A pull that answers at once when nothing is left: the flag is deprecated, but the
                # emulator honours it and without it an empty pull waits out its whole timeout.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    resp = self.sub.pull(
                        request={"subscription": self.name, "max_messages": 1000, "return_immediately": True},
                        timeout=10,
                    )
                if not resp.received_messages:
                    return
                self.sub.acknowledge(
                    request={"subscription": self.name, "ack_ids": [m.ack_id for m in resp.received_messages]}
                )
                for m in resp.received_messages:
                    event = Event.from_bytes(m.message.data)
                    self.messages[event.data.job_id] += 1
                    self.events[event.data.job_id].setdefault(event.id, event)

    def of(self, job_id: str) -> dict[str, Event]:
        self.drain()
        return dict(self.events.get(job_id, {}))


# ---- the stack ------------------------------------------------------------------------------------


@dataclass
class FaultStack:
    """The stack under test and what the checks need to look at it."""

    stack: Stack
    pools: Pools
    api: httpx.Client
    db: Any
    publisher: Any
    subscriber: Any
    audit: Audit
    cmd_codes: list[str] = field(default_factory=lambda: [f"{i:02d}" for i in range(1, 100)])
    _tasks: Any = None

    @property
    def tasks(self) -> Any:
        """The stock Cloud Tasks client on the stack's emulator (its channel reconnects after a restart)."""
        if self._tasks is None:
            from common.gcp.clients import tasks_client_for

            self._tasks = tasks_client_for(self.stack.env["CLOUD_TASKS_EMULATOR_HOST"])
        return self._tasks

    @property
    def endpoints(self) -> dict[str, str]:
        return self.stack.endpoints()

    @property
    def project(self) -> str:
        return self.stack.config.project

    @property
    def data_dir(self) -> Path:
        return Path(self.stack.env["TRIBUTARY_OUTPUT_URI"].removeprefix("file://"))

    @property
    def replay(self) -> str:
        return self.endpoints["replay_url"]

    def cmd(self) -> str:
        return self.cmd_codes.pop(0)

    # faults --------------------------------------------------------------------------------------
    def add_faults(self, *rules: dict[str, Any]) -> None:
        r = httpx.post(f"{self.replay}/_replay/faults", json=list(rules), timeout=10)
        r.raise_for_status()

    def applied(self, tag: str) -> int:
        """How many requests the replay rules tagged ``tag`` spoiled."""
        rules = httpx.get(f"{self.replay}/_replay/faults", timeout=10).json()
        return sum(r["applied"] for r in rules if r.get("tag") == tag)

    def zip_path(self, slot: str, stream: str = "events") -> str:
        suffix = {"events": "export.CSV.zip", "mentions": "mentions.CSV.zip"}[stream]
        return f"/gdelt/{slot}.{suffix}"

    def speed_up_queues(self) -> None:
        """Fast retries and no pacing on the queues under test, with the stock Tasks client."""
        from google.protobuf import duration_pb2

        client = self.tasks
        for source in QUEUES:
            name = f"projects/{self.project}/locations/us-central1/queues/ingest-{source}"
            queue = client.get_queue(name=name)
            queue.rate_limits.max_dispatches_per_second = 100
            queue.rate_limits.max_concurrent_dispatches = 64
            for key, seconds in (
                ("min_backoff", FAST_RETRY["min_backoff"]),
                ("max_backoff", FAST_RETRY["max_backoff"]),
            ):
                d = duration_pb2.Duration()
                d.FromNanoseconds(int(seconds * 1e9))
                setattr(queue.retry_config, key, d)
            queue.retry_config.max_doublings = FAST_RETRY["max_doublings"]
            client.update_queue(queue=queue)

    def tasks_left(self, job_id: str, source: str) -> int:
        parent = f"projects/{self.project}/locations/us-central1/queues/ingest-{source}"
        names = [t.name.rsplit("/", 1)[-1] for t in self.tasks.list_tasks(parent=parent)]
        return sum(1 for n in names if n == job_id or n.startswith(f"{job_id}--"))

    def deliveries(self, job_id: str) -> tuple[list[str], int]:
        """(statuses of the Tasks emulator's attempts for the job's tasks, how many extra copies it sent)."""
        log = self.stack.state_dir / "logs" / "tasks.log"
        attempts: list[str] = []
        copies = 0
        for m in _DISPATCH.finditer(log.read_text(errors="replace") if log.exists() else ""):
            if m["task"] == job_id or m["task"].startswith(f"{job_id}--"):
                if m["dup"]:
                    copies += 1
                else:
                    attempts.append(m["status"])
        return attempts, copies

    # jobs ----------------------------------------------------------------------------------------
    def submit(self, spec: Spec) -> dict[str, Any]:
        r = self.api.post("/v1/jobs", json={"source": spec.source, "params": spec.params})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def wait_terminal(self, job_id: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = self.api.get(f"/v1/jobs/{job_id}", timeout=5)
                last = r.json() if r.status_code == 200 else r.text
                if r.status_code == 200 and last["status"] in ("succeeded", "failed"):
                    return dict(last)
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} is not terminal after {timeout:.0f} s (orphan?): {last}")

    def wait_copies(self, job_id: str, per_attempt: int, timeout: float = 30.0) -> None:
        """Wait until every extra copy of the job's deliveries (``--duplicate-deliveries``) has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            attempts, copies = self.deliveries(job_id)
            if attempts and copies >= per_attempt * len(attempts):
                return
            time.sleep(0.2)
        raise AssertionError(f"extra deliveries of {job_id} still running after {timeout:.0f} s")

    def markers(self, job_id: str) -> set[str]:
        return set(stored_markers(self.db.collection("jobs").document(job_id)))

    def settle(self, job_id: str, timeout: float = 20.0, quiet: float = 0.5) -> tuple[set[str], dict[str, Event]]:
        """Wait until the job's markers equal its published event ids and stay so for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        stable_since: float | None = None
        markers, published = self.markers(job_id), self.audit.of(job_id)
        while time.monotonic() < deadline:
            markers, published = self.markers(job_id), self.audit.of(job_id)
            if markers == set(published):
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= quiet:
                    break
            else:
                stable_since = None
            time.sleep(0.2)
        return markers, published

    def parquet_rows(self, spec: Spec) -> tuple[int, int, list[str]]:
        """(files, rows) of every Parquet object whose name starts with one of the job's part keys, and
        any temporary file left beside them."""
        files = rows = 0
        temps: list[str] = []
        for rel in spec.parquet:
            folder, key = (self.data_dir / rel).parent, Path(rel).name
            if not folder.exists():
                continue
            for f in folder.iterdir():
                if f.name.startswith(key) and f.suffix == ".parquet":
                    files += 1
                    rows += pq.read_metadata(f).num_rows
                elif f.name.startswith(f".{key}"):
                    temps.append(f.name)
        return files, rows, temps

    def check(
        self,
        spec: Spec,
        submitted: dict[str, Any],
        *,
        fault: str,
        variant: str,
        injected: int | str,
        rejected: int = 0,
    ) -> dict[str, Any]:
        """Assert everything RELIABILITY.md promises for one job; returns (and records) its figures."""
        job_id = submitted["job_id"]
        _t0 = time.monotonic()
        job = self.wait_terminal(job_id)
        created, finished = (datetime.fromisoformat(job[k]) for k in ("created_at", "finished_at"))
        elapsed = (finished - created).total_seconds()
        markers, published = self.settle(job_id)
        attempts, copies = self.deliveries(job_id)
        files, rows, temps = self.parquet_rows(spec)
        expected_rows = sum(spec.parquet.values()) if spec.status == "succeeded" else 0
        expected_files = len(spec.parquet) if spec.status == "succeeded" else 0
        tasks_left = self.tasks_left(job_id, spec.source)
        folded = fold(Job.model_validate(submitted), published.values())
        figures = {
            "fault": fault,
            "variant": variant,
            "source": spec.source,
            "job_id": job_id,
            "injected": injected,
            "expected": spec.status + (f" ({spec.kind})" if spec.kind else ""),
            "status": job["status"] + (f" ({job['error']['kind']})" if job.get("error") else ""),
            "message": re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", (job.get("error") or {}).get("message", "")),
            "attempt": job["attempt"],
            "deliveries": len(attempts),
            "rejected": rejected + sum(1 for s in attempts if not s.startswith("2")),
            "copies": copies,
            "rows": rows,
            "expected_rows": expected_rows,
            "duplicates": max(0, rows - expected_rows) + max(0, files - expected_files),
            "orphans": int(job["status"] not in ("succeeded", "failed")) + tasks_left,
            "markers": len(markers),
            "distinct_events": len(published),
            "seconds": round(elapsed, 1),
        }
        figures["ok"] = False
        if os.environ.get("FAULTS_DEBUG"):
            print("\nFIGURES", figures, "settled", round(time.monotonic() - _t0, 1), flush=True)
        RESULTS.append(figures)
        # the job's terminal state, error kind and a readable message
        assert job["status"] == spec.status, (job, figures)
        if spec.kind is None:
            assert job["error"] is None, job
        else:
            assert job["error"]["kind"] == spec.kind, job
            for part in spec.message:
                assert part in job["error"]["message"], (part, job["error"]["message"])
            assert len(job["error"]["message"]) < 1000 and "Traceback" not in job["error"]["message"]
        if spec.attempt is not None:
            assert job["attempt"] == spec.attempt, job
        assert job["attempt"] >= spec.min_attempt, job
        # no duplicate records, nothing half-written left behind
        assert (files, rows) == (expected_files, expected_rows), figures
        assert job["records"] == expected_rows, job
        assert not temps, temps
        # no orphan
        assert tasks_left == 0, f"{tasks_left} task(s) of {job_id} still queued"
        # every event applied once, and the job is what one application of each gives
        assert markers == set(published), (sorted(markers ^ set(published)), figures)
        assert job["status"] == folded.status.value, (job, folded)
        for name in ("attempt", "records", "bytes"):
            assert job[name] == getattr(folded, name), (name, job[name], getattr(folded, name))
        assert sorted(job["outputs"]) == sorted(folded.outputs)
        assert (job["error"] or {}).get("message") == (folded.error.message if folded.error else None)
        assert job["started_at"] and job["finished_at"] and job["started_at"] <= job["finished_at"], job
        figures["ok"] = True
        return figures


def fold(initial: Job, events: Any) -> Job:
    """The job after applying each distinct event once (in publish order), then the completion of a
    multi-part job as ``common.gcp.firestore.finish_if_complete`` derives it from its parts."""
    job = initial
    parts: dict[str, EventData] = {}
    for event in sorted(events, key=lambda e: e.time):
        if event.type is EventType.progress and event.data.part:
            parts.setdefault(event.data.part, event.data)
        job = apply_event(job, event) or job
    if not job.status.terminal and job.progress and job.progress.total > 1 and len(parts) >= job.progress.total:
        done = Event.make(
            EventType.succeeded,
            EventData(
                job_id=job.job_id,
                source=job.source,
                attempt=max(p.attempt for p in parts.values()),
                records=sum(p.records for p in parts.values()),
                bytes=sum(p.bytes for p in parts.values()),
                outputs=sorted({o for p in parts.values() for o in p.outputs}),
            ),
            seq="parts",
        )
        job = apply_event(job, done) or job
    return job


@contextlib.contextmanager
def fault_stack_dir(session: Any) -> Iterator[Path]:
    """A state folder of its own (pytest's numbered temp folders are pruned by concurrent pytest runs);
    removed afterwards unless a test failed (its logs are then kept, and the path printed)."""
    root = Path(tempfile.mkdtemp(prefix="tributary-faults-"))
    failed_before = session.testsfailed
    try:
        yield root
    finally:
        if session.testsfailed == failed_before and not os.environ.get("FAULTS_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nfault stack logs kept in {root / 'stack' / 'logs'}")


def start_fault_stack(root: Path, *, env: dict[str, str] | None = None) -> FaultStack:
    """The stack with the fault settings, fast queues and the audit subscription."""
    pools = build_replay_dir(root / "replay")
    config = StackConfig(
        state_dir=root / "stack",
        replay_dir=root / "replay",
        auto_ports=True,
        scheduler=False,
        env={
            "TRIBUTARY_HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
            "TRIBUTARY_MAX_DOWNLOAD_BYTES": str(MAX_DOWNLOAD_BYTES),
            "THREADS": "32",  # functions-framework's gunicorn threads: every scenario runs at once
            **(env or {}),
        },
    )
    stack = Stack(config)
    stack.up()
    try:
        with client_env(stack.env):
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import firestore, pubsub_v1

            db = firestore.Client(project=config.project, credentials=AnonymousCredentials())
            publisher = pubsub_v1.PublisherClient()
            subscriber = pubsub_v1.SubscriberClient()
        audit_name = f"projects/{config.project}/subscriptions/faults-audit"
        subscriber.create_subscription(
            request={"name": audit_name, "topic": f"projects/{config.project}/topics/ingest-events"}
        )
        fs = FaultStack(
            stack=stack,
            pools=pools,
            api=httpx.Client(base_url=stack.endpoints()["api_url"], timeout=30),
            db=db,
            publisher=publisher,
            subscriber=subscriber,
            audit=Audit(subscriber, audit_name),
        )
        fs.speed_up_queues()
    except BaseException:
        stack.down()
        raise
    return fs


def stop_fault_stack(fs: FaultStack) -> None:
    fs.api.close()
    with contextlib.suppress(Exception):
        fs.subscriber.close()
    fs.stack.down()


def orphans(fs: FaultStack) -> list[str]:
    """Every job of the stack still queued or running."""
    out = []
    for status in ("queued", "running"):
        r = fs.api.get("/v1/jobs", params={"status": status, "limit": 500})
        out += [j["job_id"] for j in r.json()["jobs"]]
    return out
