"""The load stage: on a job's outputs, load each normalized Parquet file into the warehouse, idempotently.

It consumes the same job events as the status function, on its own push subscription, so ingestion never
waits on the warehouse. ``job.succeeded`` carries a single-part job's outputs. A multi-part job is finished
in Firestore by counting its parts, without a published ``job.succeeded``, so each part's outputs are
loaded from its ``job.progress`` event: a part's outputs are final once that event is published, and a
load's id comes from the job and the output, so a redelivery or a later ``job.succeeded`` loads nothing again.
"""

from __future__ import annotations

import logging
from typing import Any

from common.core.errors import PermanentError, TransientError
from common.core.events import Event, EventType
from common.core.warehouse import LoadReport, Warehouse, load_id, parse_output
from common.gcp.bigquery import BigQueryWarehouse
from common.gcp.firestore import deadletters
from common.runtime import executors
from common.runtime.embedded import DuckDBWarehouse
from common.runtime.status import PoisonEvent, decode_pubsub
from common.settings import Settings, settings
from common.sources import get_source

log = logging.getLogger("tributary.load")

#: The embedded warehouse's file when ``TRIBUTARY_WAREHOUSE_PATH`` is not set.
DEFAULT_DUCKDB = ".tributary/warehouse.duckdb"
#: The events whose outputs are loaded.
LOADED_EVENTS = (EventType.succeeded, EventType.progress)


def warehouse(s: Settings | None = None) -> Warehouse:
    """The configured warehouse: ``TRIBUTARY_WAREHOUSE=duckdb`` (the default, a file) or ``bigquery``."""
    s = s or settings()
    if s.warehouse == "bigquery":
        return BigQueryWarehouse(
            project=s.project,
            dataset=s.bigquery_dataset,
            location=s.bigquery_location,
            endpoint=s.bigquery_emulator_host,
        )
    return DuckDBWarehouse(s.warehouse_path or DEFAULT_DUCKDB)


def load_outputs(job_id: str, source_name: str, outputs: list[str], wh: Warehouse | None = None) -> LoadReport:
    """Load every normalized Parquet output of a job (raw files and schema documents are skipped).

    Raises:
        PermanentError: an unknown stream, a missing output, or a schema change (naming the column).
        TransientError: the warehouse is unavailable for now.
    """
    wh = wh or warehouse()
    source = get_source(source_name)
    report = LoadReport(warehouse=wh.name)
    for uri in outputs:
        output = parse_output(uri, source.name)
        if output is None:
            continue
        columns = source.schemas.get(output.stream)
        if columns is None:
            raise PermanentError(f"output {output.name}: source {source.name} has no stream {output.stream!r}")
        result = wh.load(output, columns, source.load_rule(output.stream), load_id(job_id, output.name))
        log.info("%s: %s %d rows into %s", job_id, "kept" if result.reused else "loaded", result.rows, result.table)
        report.add(result)
    return report


def handle_event(event: Event, wh: Warehouse | None = None) -> dict[str, Any] | None:
    """Load the outputs an event carries and record the outcome on the job (its ``load`` field).

    A permanent failure (a schema change) is recorded on the job and acked: redelivering cannot fix it.

    Raises:
        TransientError: the warehouse or Firestore is unavailable (Pub/Sub redelivers).
    """
    if event.type not in LOADED_EVENTS or not any(o.endswith(".parquet") for o in event.data.outputs):
        return None
    wh = wh or warehouse()
    try:
        report = load_outputs(event.data.job_id, event.data.source, event.data.outputs, wh)
    except PermanentError as exc:
        log.error("job %s: load failed: %s", event.data.job_id, exc.message)
        report = LoadReport(status="failed", warehouse=wh.name, error=exc.message)
    return executors.state().record_load(event.data.job_id, event.data.part or "job", report.to_dict())


def handle_pubsub(data: Any, wh: Warehouse | None = None) -> dict[str, Any] | None:
    """Load what a Pub/Sub push of a job event carries; unreadable events are kept in ``dead_events`` and acked.

    Raises:
        TransientError: only for failures that may pass, so Pub/Sub redelivers.
    """
    try:
        event = decode_pubsub(data)
    except PoisonEvent as exc:
        log.error("unreadable event %s kept in dead_events: %s", exc.message_id or "?", exc)
        deadletters.record(exc.message_id, exc.raw, f"load: {exc}", exc.attributes)
        return None
    return handle_event(event, wh)


def handle_bytes(body: bytes, wh: Warehouse | None = None) -> dict[str, Any] | None:
    """Load what one CloudEvent's bytes carry (the in-process bus's delivery); an unreadable event is the
    status rule's to keep, and a failure other than a transient one is logged, not raised.

    Raises:
        TransientError: the warehouse or the state is unavailable for now (the event is delivered again).
    """
    try:
        event = Event.from_bytes(body)
    except ValueError:
        return None
    try:
        return handle_event(event, wh)
    except TransientError:
        raise
    except Exception:  # the job's outcome stands; its load is for an operator to see in the log
        log.exception("job %s: load failed", event.data.job_id)
        return None
