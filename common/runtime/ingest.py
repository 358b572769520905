"""Running an ingest task: plan → fetch → verify → parse → write raw + normalized → publish the outcome.

The first task of a job plans it. A one-part plan runs at once; a larger one fans out one task per
part, and each part reports its result in a ``progress`` event (the status function finishes the job
when all parts have reported). Outputs have deterministic names, so a retry overwrites, never adds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from common.core.errors import ConfigError, IngestError, PermanentError, SkippableRecord, TransientError
from common.core.events import Event, EventData, EventType, PartProgress
from common.core.jobs import JobStatus
from common.core.schema import arrow_schema
from common.core.tasks import TaskPayload
from common.core.warehouse import hive_partition
from common.gcp.objects import OutputStore, output_store
from common.gcp.secrets import get_secret, set_command
from common.runtime import executors, usage
from common.runtime.context import source_context
from common.runtime.logs import bind_job
from common.sources import get_source
from common.sources.base import Context, Part, Source

log = logging.getLogger("tributary.ingest")

#: Rows buffered before dict records are converted to an Arrow batch (bounds memory for record-yielding parsers).
ROWS_PER_BATCH = 10_000
#: Arrow bytes buffered before a Parquet row group is written. Each ``write_batch`` call would be its own
#: row group (a GDELT export parses into ~1 MiB batches): for the 10x GDELT file, nine small row groups
#: took 59 ms and 1.7 MB where one took 36 ms and 0.6 MB (dictionaries and statistics per column chunk).
#: 16 MiB keeps the memory bound while giving readers (BigQuery, DuckDB) row groups worth pruning.
ROW_GROUP_BYTES = 16 << 20


@dataclass
class Delivery:
    """What Cloud Tasks told us about this delivery (from the ``X-CloudTasks-*`` headers)."""

    attempt: int = 1
    max_attempts: int = 1
    task_name: str = ""

    @property
    def final(self) -> bool:
        return self.max_attempts > 0 and self.attempt >= self.max_attempts


@dataclass
class PartResult:
    records: int = 0
    bytes: int = 0
    skipped: int = 0
    outputs: list[str] = field(default_factory=list)
    watermark: str | None = None
    cursors: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskOutcome:
    """How the transport should answer: ``retry`` means "answer non-2xx so Cloud Tasks retries"."""

    retry: bool = False
    retry_after: float | None = None
    body: dict[str, Any] = field(default_factory=dict)


def run_task(payload: TaskPayload, delivery: Delivery, *, store: OutputStore | None = None) -> TaskOutcome:
    """Run one delivery of an ingest task and publish what happened. Never raises for ingestion errors."""
    usage.start()
    source = get_source(payload.source)
    data = EventData(job_id=payload.job_id, source=source.name, attempt=delivery.attempt, run=payload.run)
    bind_job(job_id=payload.job_id, source=source.name, attempt=delivery.attempt)
    if (stopped := stopped_because(payload)) is not None:
        log.info("job %s: %s; this task does nothing", payload.job_id, stopped)
        return TaskOutcome(body={"job_id": payload.job_id, "skipped": stopped})
    try:
        secrets = load_secrets(source, job_id=payload.job_id)
        params = source.validate_params(payload.params, trusted=True)  # our queue's payload, planned by us
        with source_context(source, secrets=secrets) as ctx:
            if payload.part is not None:
                result = run_part(source, payload.part, ctx, store or output_store())
                _emit(EventType.progress, data, result, part=payload.part, seq=payload.part.key)
                return TaskOutcome(body={"part": payload.part.key, "records": result.records})
            parts = source.plan(params, ctx)
            if not parts:
                # Nothing new upstream (e.g. an unchanged OFAC snapshot): a success that writes nothing.
                log.info("job %s: %s has nothing new upstream", payload.job_id, source.name)
                _emit(EventType.succeeded, data, PartResult())
                return TaskOutcome(body={"job_id": payload.job_id, "records": 0, "up_to_date": True})
            total = len(parts)
            publish(Event.make(EventType.started, data.model_copy(update={"progress": _progress(0, total)})))
            if total == 1:
                result = run_part(source, parts[0], ctx, store or output_store())
                _emit(EventType.succeeded, data, result)
                return TaskOutcome(body={"job_id": payload.job_id, "records": result.records})
            dispatch = executors.dispatcher(source.name)
            for part in parts:
                part_task = TaskPayload(
                    job_id=payload.job_id, source=source.name, params=payload.params, part=part, run=payload.run
                )
                dispatch.enqueue(part_task, source.queue)
            return TaskOutcome(body={"job_id": payload.job_id, "parts": total})
    except TransientError as exc:
        return _transient(exc, data, delivery)
    except IngestError as exc:
        log.warning("job %s failed permanently: %s", payload.job_id, exc.message)
        publish(Event.make(EventType.failed, data.model_copy(update={"error": exc.to_dict()})))
        return TaskOutcome(body={"job_id": payload.job_id, "error": exc.to_dict()})
    except Exception as exc:  # a bug or an unclassified failure: retry within max_attempts, never forever
        log.exception("job %s: unexpected error", payload.job_id)
        return _transient(TransientError(f"internal error: {type(exc).__name__}: {exc}"), data, delivery)


def publish(event: Event) -> str:
    """Publish a job event on the configured bus (Pub/Sub, or the embedded one), with what this task used so far
    (its cost's compute, ``common.runtime.usage``).

    Raises:
        TransientError: the bus did not take it.
    """
    return executors.events().publish(usage.stamp(event))


def stopped_because(payload: TaskPayload) -> str | None:
    """Why this task must not run (its job's run was cancelled, or a retry replaced it), else None: the part
    boundary where a cancel takes effect. A job that is not found runs as before (its events are then ignored);
    Firestore failing to answer lets the task run: a cancel still wins over its outcome (``apply_event``).
    """
    try:
        job = executors.state().get_job(payload.job_id, with_progress=False)
    except Exception as exc:  # the check is a saving, not a guard: correctness rests on the state machine
        log.warning("job %s: could not read the job before running (%s); running", payload.job_id, exc)
        return None
    if job is None:
        return None
    if job.run != payload.run:
        return f"run {payload.run} was replaced by run {job.run} (a retry)"
    if job.status is JobStatus.cancelled:
        return f"run {job.run} was cancelled"
    return None


def _transient(exc: TransientError, data: EventData, delivery: Delivery) -> TaskOutcome:
    if delivery.final:
        error = {
            "kind": "transient",
            "type": type(exc).__name__,
            "message": f"gave up after {delivery.attempt} attempts: {exc.message}",
        }
        publish(Event.make(EventType.failed, data.model_copy(update={"error": error})))
        return TaskOutcome(body={"job_id": data.job_id, "error": error})
    log.warning("job %s attempt %d: transient: %s", data.job_id, delivery.attempt, exc.message)
    with contextlib.suppress(TransientError):  # the retry is what matters; the event is informational
        publish(Event.make(EventType.retrying, data.model_copy(update={"error": exc.to_dict()})))
    return TaskOutcome(retry=True, retry_after=exc.retry_after, body={"job_id": data.job_id, "error": exc.to_dict()})


def _emit(etype: EventType, data: EventData, result: PartResult, *, part: Part | None = None, seq: str = "0") -> None:
    update: dict[str, Any] = {
        "records": result.records,
        "bytes": result.bytes,
        "outputs": result.outputs,
        "watermark": result.watermark,
        "cursors": result.cursors,
    }
    if part is not None:
        update.update(part=part.key, progress=_progress(1, part.total))
    publish(Event.make(etype, data.model_copy(update=update), seq=seq))


def _progress(done: int, total: int) -> PartProgress:
    return PartProgress(done=done, total=total)


def run_part(source: Source, part: Part, ctx: Context, store: OutputStore) -> PartResult:
    """Fetch, store raw, parse, store normalized (Parquet) with its schema. Deterministic object names.

    Raises:
        IngestError: from fetch or parse.
    """
    raw = source.fetch(part, ctx)
    # Hive-style partition folders (dt=2024-01-15, partition=DFF), so DuckDB, Spark and external tables prune them.
    base = "/".join(x for x in (source.name, part.stream, hive_partition(part.partition)) if x)
    outputs = [store.put_file(raw.path, f"raw/{base}/{raw.name}", raw.content_type)]
    columns = source.schemas[part.stream]
    parquet = ctx.workdir / f"{part.key}.parquet"
    with raw.open() as stream:
        records, skipped = write_parquet(source.parse(stream, part), columns, parquet)
    outputs.append(store.put_file(parquet, f"normalized/{base}/{part.key}.parquet", "application/vnd.apache.parquet"))
    outputs.append(_put_schema(store, f"normalized/{source.name}/{part.stream}/schema.json", columns))
    if skipped:
        log.warning("%s %s: skipped %d malformed records", source.name, part.key, skipped)
    watermark = source.watermark(part, records)
    return PartResult(
        records=records,
        bytes=raw.size,
        skipped=skipped,
        outputs=outputs,
        watermark=watermark,
        cursors={part.cursor: watermark} if part.cursor and watermark else {},
    )


#: Stream schemas this process has written, by URI, with their bytes: a stream's schema is
#: the same for every part, and a backfill of 96 parts would otherwise upload it 96 times.
_schemas_written: dict[str, bytes] = {}


def _put_schema(store: OutputStore, name: str, columns: Any) -> str:
    """Write the stream's schema (BigQuery's JSON form) unless this process wrote the same to ``store``; its URI."""
    schema = orjson.dumps([c.bigquery() for c in columns], option=orjson.OPT_INDENT_2)
    uri = store.uri(name)
    if _schemas_written.get(uri) == schema and store.exists(name):
        return uri
    uri = store.put_bytes(schema, name, "application/json")
    _schemas_written[uri] = schema
    return uri


def write_parquet(items: Iterable[Any], columns: Any, path: Path) -> tuple[int, int]:
    """Write parsed items (dicts, Arrow batches or ``SkippableRecord``s) to one Parquet file.

    Returns ``(records, skipped)``. Memory stays bounded: batches are gathered into row groups of about
    ``ROW_GROUP_BYTES`` of Arrow data, each written as soon as it is full.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(columns)
    records = skipped = 0
    pending: list[dict[str, Any]] = []  # dict records not yet converted
    group: list[Any] = []  # Arrow batches of the row group being gathered
    group_bytes = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:

        def add(batch: Any) -> None:
            nonlocal records, group_bytes
            group.append(batch)
            group_bytes += batch.nbytes
            records += batch.num_rows
            if group_bytes >= ROW_GROUP_BYTES:
                write_group()

        def write_group() -> None:
            nonlocal group_bytes
            if group:
                table = pa.Table.from_batches(group, schema=schema)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                group.clear()
                group_bytes = 0

        def convert_pending() -> None:
            if pending:
                add(pa.RecordBatch.from_pylist(pending, schema=schema))
                pending.clear()

        try:
            for item in items:
                if isinstance(item, dict):
                    pending.append(item)
                    if len(pending) >= ROWS_PER_BATCH:
                        convert_pending()
                elif isinstance(item, SkippableRecord):
                    skipped += 1
                else:
                    add(item if item.schema.equals(schema) else item.cast(schema))
            convert_pending()
            write_group()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise PermanentError(f"records do not match the declared schema: {exc}") from exc
    return records, skipped


def load_secrets(source: Source, *, job_id: str | None = None) -> dict[str, str]:
    """Every secret the source declares, before any work starts (read at each task: a secret set meanwhile counts).

    Raises:
        ConfigError: naming the first missing secret, and the commands that set it and run the job again.
    """
    if not source.secrets:
        return {}
    out = {}
    for name in source.secrets:
        value = get_secret(name)
        if not value:
            again = f", then `tributary jobs retry {job_id}`" if job_id else ""
            raise ConfigError(
                f"secret {name} is not set (needed by source {source.name}); set it with `{set_command(name)}`{again}"
            )
        out[name] = value
    return out
