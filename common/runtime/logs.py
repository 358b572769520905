"""Logging for the functions: JSON lines that Cloud Logging reads in the cloud, readable text locally.

In the cloud every line is one JSON object (python-json-logger) with ``severity``, ``message``, the request's
trace (``logging.googleapis.com/trace`` and ``spanId``, from ``traceparent`` or ``X-Cloud-Trace-Context``) and
the labels ``job_id``, ``source`` and ``attempt`` (``logging.googleapis.com/labels``). Each entry point binds the
request with :func:`bind_request`; the runtime adds the job's labels with :func:`bind_job`. Both live in a
context variable, so concurrent requests on threads keep their own.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal

from common.settings import settings

TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
LABELS_KEY = "logging.googleapis.com/labels"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: W3C trace context: ``version-traceid-spanid-flags`` (https://www.w3.org/TR/trace-context/).
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
#: Google's older header: ``TRACE_ID/SPAN_ID;o=OPTIONS`` with a decimal span id.
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?(?:;o=(\d))?$")

#: What the current request's log lines carry: the trace fields and the labels.
_context: ContextVar[dict[str, Any] | None] = ContextVar("tributary_log_context", default=None)


def trace_fields(headers: Mapping[str, str], project: str) -> dict[str, Any]:
    """Cloud Logging's trace fields for a request's headers (keys lower-case); empty without a valid header."""
    if match := _TRACEPARENT.match(headers.get("traceparent", "").strip().lower()):
        trace_id, span, flags = match.groups()
        if trace_id.strip("0") and span.strip("0"):
            return {
                TRACE_KEY: f"projects/{project}/traces/{trace_id}",
                SPAN_KEY: span,
                SAMPLED_KEY: bool(int(flags, 16) & 1),
            }
    if match := _CLOUD_TRACE.match(headers.get("x-cloud-trace-context", "").strip()):
        trace_id, span, sampled = match.groups()
        fields: dict[str, Any] = {TRACE_KEY: f"projects/{project}/traces/{trace_id.lower()}"}
        if span:
            fields[SPAN_KEY] = f"{int(span) & 0xFFFFFFFFFFFFFFFF:016x}"
        if sampled is not None:
            fields[SAMPLED_KEY] = sampled == "1"
        return fields
    return {}


def bind_request(headers: Mapping[str, str]) -> None:
    """Start a request's log context: its trace (from ``headers``, keys lower-case) and no labels yet."""
    _context.set(trace_fields(headers, settings().project))


def bind_job(*, job_id: str, source: str, attempt: int | None = None) -> None:
    """Label the rest of the request's log lines with the job they are about."""
    current = dict(_context.get() or {})
    labels = {"job_id": job_id, "source": source}
    if attempt is not None:
        labels["attempt"] = str(attempt)
    current[LABELS_KEY] = {**current.get(LABELS_KEY, {}), **labels}
    _context.set(current)


class ContextFilter(logging.Filter):
    """Copies the request's trace and labels onto each record (the JSON formatter writes them as fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            setattr(record, key, value)
        return True


def log_format() -> Literal["json", "text"]:
    """``TRIBUTARY_LOG_FORMAT``; "auto" is JSON on Cloud Run and Cloud Functions (``K_SERVICE`` is set), else text."""
    chosen = settings().log_format
    if chosen == "auto":
        return "json" if os.environ.get("K_SERVICE") else "text"
    return chosen


def make_handler(fmt: Literal["json", "text"], stream: Any = None) -> logging.Handler:
    """A stream handler (standard error by default) writing ``fmt`` lines with the request's context."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        # Imported only where it is used: a local function or the CLI never pays for it. In the cloud it adds
        # 2 to 15 ms to a cold start (python -X importtime, after functions-framework, on a loaded 2-core machine).
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                ["levelname", "message", "name"],
                rename_fields={"levelname": "severity", "name": "logger", "exc_info": "stack_trace"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def setup_logging() -> None:
    """Log every function's lines in one format (:func:`log_format`), at ``TRIBUTARY_LOG_LEVEL`` (INFO).

    Like :func:`logging.basicConfig`, it leaves a root logger that already has handlers alone.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(make_handler(log_format()))
    root.setLevel(settings().log_level.upper())
    # httpx logs each full URL at INFO, query string (API keys) included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
