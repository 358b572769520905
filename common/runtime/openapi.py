"""The API's OpenAPI 3.0 document, built from the same pydantic models the handlers validate with."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common.core.jobs import Job

REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable code, e.g. invalid_params")
    message: str = Field(description="what is wrong, for a person")
    field: str | None = Field(None, description="the part of the request at fault, e.g. params.slot")


class Error(BaseModel):
    model_config = ConfigDict(title="Error")
    error: ErrorDetail


class JobList(BaseModel):
    jobs: list[Job]


class BatchCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int


class BatchOut(BaseModel):
    batch_id: str
    kind: str
    source: str | None = None
    start: str | None = None
    end: str | None = None
    params: dict[str, Any] = {}
    total: int
    created: int
    reused: int
    created_at: str
    status: str
    counts: BatchCounts
    done: int


def _schemas() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    from common.runtime.api import BackfillRequest, JobRequest, RunDailyRequest

    models: list[type[BaseModel]] = [Job, JobList, JobRequest, BackfillRequest, RunDailyRequest, Error, BatchOut]
    _, top = models_json_schema(
        [(m, "validation" if "Request" in m.__name__ else "serialization") for m in models], ref_template=REF
    )
    return dict(top.get("$defs", {}))


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=ref)}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json("Error", "a JSON error naming the problem") for c in codes}


def _job_request() -> dict[str, Any]:
    """``{source, params}`` as one alternative per registered source, each with its own params schema."""
    from common.sources import all_sources

    variants = []
    for s in all_sources():
        params = s.params_model.model_json_schema(ref_template="#/components/schemas/" + s.name + "_{model}")
        defs = params.pop("$defs", {})
        for name, schema in defs.items():
            _extra_schemas[f"{s.name}_{name}"] = schema
        variants.append(
            {
                "type": "object",
                "title": f"{s.name} job",
                "additionalProperties": False,
                "required": ["source"],
                "properties": {"source": {"type": "string", "enum": [s.name]}, "params": params},
            }
        )
    return {"oneOf": variants, "discriminator": {"propertyName": "source"}}


_extra_schemas: dict[str, Any] = {}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document served at ``GET /v1/openapi.json``."""
    # Ids are [A-Za-z0-9_-]. functions-framework's catch-all route does not match a path with a newline
    # in it, so Flask itself would answer such a request with an HTML 404 (docs/google-quirks.md).
    id_schema = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+$"}
    id_param = {"in": "path", "required": True, "schema": id_schema}
    query = [
        {"name": "source", "in": "query", "schema": {"type": "string"}},
        {
            "name": "status",
            "in": "query",
            "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
        },
        {"name": "batch_id", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    ]
    idem = {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
    any_object = {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Tributary API",
            "version": "1.0.0",
            "description": "Submit and follow ingestion jobs. Errors are {error: {code, message, field}}.",
        },
        "paths": {
            "/v1/jobs": {
                "post": {
                    "summary": "Submit a job (idempotent)",
                    "parameters": [idem],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model="JobRequest")}}},
                    },
                    "responses": {
                        "202": _json("Job", "the job, queued (or the existing one)"),
                        **_errors(400, 413, 415, 503),
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": query,
                    "responses": {"200": _json("JobList", "jobs"), **_errors(400, 503)},
                },
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "summary": "One job",
                    "parameters": [{"name": "job_id", **id_param}],
                    "responses": {"200": _json("Job", "the job"), **_errors(400, 404, 503)},
                }
            },
            "/v1/sources": {
                "get": {"summary": "Sources and their state", "responses": {"200": any_object, **_errors(503)}}
            },
            "/v1/backfills": {
                "post": {
                    "summary": "Backfill a range",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model="BackfillRequest")}}},
                    },
                    "responses": {"202": _json("BatchOut", "the batch"), **_errors(400, 413, 415, 502, 503)},
                }
            },
            "/v1/backfills/{batch_id}": {
                "get": {
                    "summary": "A backfill's progress",
                    "parameters": [{"name": "batch_id", **id_param}],
                    "responses": {"200": _json("BatchOut", "the batch"), **_errors(404, 503)},
                }
            },
            "/api/v1/ingest/run-daily": {
                "post": {
                    "summary": "Enqueue every source due today (n8n contract)",
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model="RunDailyRequest")}}},
                    },
                    "responses": {"202": any_object, **_errors(400, 413, 415, 503)},
                }
            },
            "/api/v1/ingest/jobs/{job_id}": {
                "get": {
                    "summary": "A batch or a job (n8n polling)",
                    "parameters": [{"name": "job_id", **id_param}],
                    "responses": {"200": any_object, **_errors(400, 404, 503)},
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": any_object}}},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": any_object}}},
        },
        "components": {"schemas": {**_schemas(), "JobRequest": _job_request(), **_extra_schemas}},
    }
