"""The route table: the one list from which the router and the OpenAPI document are both made; and dispatch."""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from common.gcp import clients
from common.runtime.api import backfills
from common.runtime.api import handlers as h
from common.runtime.api import models as m
from common.runtime.api import operations as ops
from common.runtime.api.models import ApiError, Response, Route
from common.runtime.api.openapi import document as build_document
from common.settings import settings

log = logging.getLogger("tributary.api")


def serve_document(**_: Any) -> Response:
    return document(), 200, {}


#: Every operation of the API, in the order the router tries them (see :class:`Route` for the fields).
ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/v1/jobs", h.submit_job, "Submit a job (idempotent)", status=202, response=m.Job,
        description="the job, queued (or the existing one)", errors=(400, 413, 415, 503),
        body=m.JobRequest, headers=m.JobHeaders,
    ),
    Route(
        "GET", "/v1/jobs", h.list_jobs, "List jobs, newest first", response=m.JobList, description="jobs",
        errors=(400, 503), query=m.JobQuery,
    ),
    Route(
        "GET", "/v1/jobs/<job_id>", h.get_job, "One job", response=m.JobOut, description="the job and its cost",
        errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/jobs/<job_id>:retry", ops.retry, "Run a failed or cancelled job again (a new run)", status=202,
        response=m.Job, description="the job, queued in its new run; runs lists every run",
        errors=(404, 409, 503),
    ),
    Route(
        "POST", "/v1/jobs/<job_id>:cancel", ops.cancel, "Cancel a queued or running job", response=m.Job,
        description="the job, cancelled (a running part finishes; no other part starts)", errors=(404, 409, 503),
    ),
    Route(
        "GET", "/v1/queues", ops.list_queues, "Every source's queue and its state", response=m.QueueList,
        description="the queues", errors=(503,),
    ),
    Route(
        "POST", "/v1/queues/<source>:pause", ops.pause_queue, "Pause a source's queue (tasks wait, none runs)",
        response=m.QueueOut, description="the queue", errors=(404, 503),
    ),
    Route(
        "POST", "/v1/queues/<source>:resume", ops.resume_queue, "Resume a paused queue", response=m.QueueOut,
        description="the queue", errors=(404, 503),
    ),
    Route(
        "POST", "/v1/queues/<source>:purge", ops.purge_queue, "Delete every task of a source's queue",
        response=m.QueueOut, description="the queue", errors=(404, 503),
    ),
    Route(
        "GET", "/v1/sources", h.list_sources, "Sources and their state", response=m.SourceList,
        description="every source", errors=(503,),
    ),
    Route(
        "POST", "/v1/backfills", backfills.submit_backfill, "Backfill a range (dry_run: its plan)", status=202,
        response=m.BatchOut, description="the batch", errors=(400, 409, 413, 415, 502, 503), body=m.BackfillRequest,
        also=((200, m.BackfillPlan, "the plan of a dry run: nothing is created"),),
    ),
    Route(
        "POST", "/v1/reaper:run", h.run_reaper, "Fail stuck jobs, re-enqueue stale queued ones (the reaper, now)",
        response=m.ReaperRun, description="what was done (or, dry, would be)", errors=(503,), query=m.ReaperQuery,
    ),
    Route(
        "GET", "/v1/backfills/<batch_id>", h.get_backfill, "A backfill's progress", response=m.BatchOut,
        description="the batch", errors=(404, 503),
    ),
    # The n8n contract from the Celery migration plan: aliases over the same machinery.
    Route(
        "POST", "/api/v1/ingest/run-daily", h.run_daily, "Enqueue every source due today (n8n contract)",
        status=202, response=m.RunDailyOut, description="the day's batch", errors=(400, 413, 415, 503),
        body=m.RunDailyRequest, body_required=False,
    ),
    Route(
        "GET", "/api/v1/ingest/jobs/<job_id>", h.get_any, "A batch or a job (n8n polling)", response=m.BatchOrJob,
        description="the batch with its jobs, or the job", errors=(400, 404, 503),
    ),
    Route("GET", "/healthz", h.health, "Liveness", response=m.Health, description="alive"),
    Route("GET", "/v1/openapi.json", serve_document, "This document", description="the OpenAPI document"),
)  # fmt: skip

#: A trailing slash is accepted (``/v1/jobs/``); repeated slashes are not merged: werkzeug would answer them
#: with a redirect, where the API answers only JSON, so ``/v1/jobs//`` is a JSON 404.
ROUTER = Map(
    [Rule(r.rule, methods=[r.method], endpoint=r.handler) for r in ROUTES],
    strict_slashes=False,
    merge_slashes=False,
)
#: Seconds a client is told to wait before retrying a 503 that carries no better figure.
RETRY_AFTER = "10"
#: Methods that only read: their Google calls get the shorter ``api_read_deadline``.
READS = frozenset({"GET", "HEAD"})


def document() -> dict[str, Any]:
    """The OpenAPI document of :data:`ROUTES`, served at ``GET /v1/openapi.json``."""
    return build_document(ROUTES)


def finish(answer: Response) -> Response:
    """The answer as sent: every 503 says when to retry (``Retry-After``)."""
    body, status, headers = answer
    if status == 503 and "Retry-After" not in headers:
        headers = {**headers, "Retry-After": RETRY_AFTER}
    return body, status, headers


def handle(method: str, path: str, *, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
    """Route one request. Answers (json, status, headers); never raises."""
    s = settings()
    deadline = min(s.api_read_deadline, s.call_deadline) if method in READS else s.call_deadline
    with clients.call_deadline(deadline):
        return finish(_dispatch(method, path, query=query, headers=headers, body=body))


def _dispatch(method: str, path: str, *, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
    try:
        handler, args = ROUTER.bind("api").match(path, method=method)
        return handler(query=query, headers=headers, body=body, **args)
    except ApiError as exc:
        return exc.body(), exc.status, {}
    except RequestRedirect:  # not with merge_slashes off; never a redirect, whatever werkzeug adds
        return ApiError(404, "not_found", f"no route {method} {path}").body(), 404, {}
    except MethodNotAllowed as exc:
        return (
            ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}").body(),
            405,
            {"Allow": ", ".join(exc.valid_methods or [])},
        )
    except NotFound:
        return ApiError(404, "not_found", f"no route {method} {path}").body(), 404, {}
    except HTTPException as exc:
        code = exc.code or 400
        return ApiError(code, "bad_request", exc.description or "bad request").body(), code, {}
    except Exception as exc:
        if (unavailable := _google_unavailable(exc)) is None:
            raise
        log.warning("%s %s: %s", method, path, unavailable.message)
        return unavailable.body(), unavailable.status, {"Retry-After": RETRY_AFTER}


def refusal(exc: BaseException) -> Response:
    """The JSON answer to what the web framework raised before reaching :func:`handle` (an HTTP error of its
    own routing, such as a 404 for a path with a newline), or to a bug (500, logged)."""
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        error = "not_found" if code == 404 else "bad_request" if code < 500 else "internal_error"
        return ApiError(code, error, exc.description or exc.name).body(), code, {}
    log.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal_error", "internal error; it was logged").body(), 500, {}


def _google_unavailable(exc: Exception) -> ApiError | None:
    """A Google service that did not answer in time (Firestore down, a call past its deadline): a 503 the
    caller can retry, instead of a 500 page. Other errors are bugs and propagate."""
    cause = clients.unavailable_cause(exc)
    if cause is None:
        return None
    message = f"a Google Cloud service is unavailable or did not answer in time: {cause}"
    return ApiError(503, "backend_unavailable", message)
