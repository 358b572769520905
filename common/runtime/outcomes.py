"""The one adapter from ingestion outcomes to Cloud Tasks answers.

Cloud Tasks retries any non-2xx. So a permanent error is recorded (a ``job.failed`` event) and answered
200, which ends the task; a transient one is answered 503 with ``Retry-After`` where known. A request
that is not a well-formed task answers 400 with a JSON error (it was not sent by our queue).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from common.core.inputs import AsciiInt
from common.gcp.tasks import TaskPayload
from common.runtime.ingest import Delivery, run_task
from common.sources import get_source

log = logging.getLogger("tributary.ingest")

Answer = tuple[dict[str, Any], int, dict[str, str]]


class TaskHeaders(BaseModel):
    """The ``X-CloudTasks-*`` headers read (keys lower-case), parsed like every other input: ASCII digits."""

    retry_count: AsciiInt = Field(0, alias="x-cloudtasks-taskretrycount", le=1_000_000)
    task_name: str = Field("", alias="x-cloudtasks-taskname", max_length=500)


def _error(status: int, code: str, message: str) -> Answer:
    log.warning("task refused (%d %s): %s", status, code, message)
    return {"error": {"code": code, "message": message}}, status, {}


def _invalid(exc: ValidationError, default: str) -> Answer:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or default
    return _error(400, "invalid_task", f"{where}: {err['msg']}")


def answer_task(body: bytes, headers: dict[str, str], *, expected_source: str | None, path: str = "") -> Answer:
    """Run the task in ``body`` and answer as Cloud Tasks needs. ``headers`` keys are lower-case.

    The task's source must be the function's own (``expected_source``, the deployed ``TRIBUTARY_SOURCE``)
    and the one its URL names (``path``, ``/<source>`` where one process serves every source): our queues
    never send anything else, so a mismatch is refused (400 ``wrong_source``) and nothing runs.
    """
    try:
        payload = TaskPayload.model_validate_json(body)
        sent = TaskHeaders.model_validate({k: v for k, v in headers.items() if k.startswith("x-cloudtasks-")})
    except ValidationError as exc:
        return _invalid(exc, "body")
    if expected_source and payload.source != expected_source:
        return _error(400, "wrong_source", f"this function ingests {expected_source!r}, not {payload.source!r}")
    named = path.strip("/").split("/", 1)[0]
    if named and payload.source != named:
        return _error(400, "wrong_source", f"a task sent to /{named} must be a {named!r} task, not {payload.source!r}")
    try:
        source = get_source(payload.source)
    except KeyError as exc:
        return _error(400, "unknown_source", str(exc.args[0]))
    delivery = Delivery(attempt=sent.retry_count + 1, max_attempts=source.queue.max_attempts, task_name=sent.task_name)
    outcome = run_task(payload, delivery)
    if outcome.retry:
        extra = {"Retry-After": str(max(1, round(outcome.retry_after)))} if outcome.retry_after else {}
        return outcome.body, 503, extra
    return outcome.body, 200, {}
