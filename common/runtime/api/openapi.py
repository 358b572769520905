"""The API's OpenAPI 3.0 document, generated from its route table and the models the handlers validate with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.runtime.api.models import ID_SCHEMA, Error, JobRequest, Route
from common.sources import all_sources

REF = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def path_of(rule: str) -> str:
    """The OpenAPI path of a werkzeug rule: ``/v1/jobs/<job_id>`` is ``/v1/jobs/{job_id}``."""
    return PATH_PARAM.sub(r"{\1}", rule)


@lru_cache(maxsize=4)
def document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The OpenAPI document of ``routes``, served at ``GET /v1/openapi.json``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(path_of(route.rule), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Tributary API",
            "version": "1.0.0",
            "description": "Submit and follow ingestion jobs. Errors are {error: {code, message, field}}.",
        },
        "paths": paths,
        "components": {"schemas": {**_schemas(routes), **_job_request()}},
    }


def _operation(route: Route) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": dict(ID_SCHEMA)}
        for name in PATH_PARAM.findall(route.rule)
    ]
    parameters += _parameters(route.query, "query") + _parameters(route.headers, "header")
    op: dict[str, Any] = {"summary": route.summary}
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {"required": route.body_required, "content": _json(_ref(route.body))}
    success = {
        "description": route.description,
        "content": _json(_ref(route.response) if route.response else ANY_OBJECT),
    }
    errors = {"description": "a JSON error naming the problem", "content": _json(_ref(Error))}
    others = {str(code): {"description": text, "content": _json(_ref(model))} for code, model, text in route.also}
    op["responses"] = {str(route.status): success, **others, **{str(code): errors for code in route.errors}}
    return op


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, Any]]:
    """One parameter per field of ``model``, by alias; optional ones are left out of the request, never null."""
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    defs = schema.get("$defs", {})
    out = []
    for name, prop in schema["properties"].items():
        prop = _not_null(prop)
        if "$ref" in prop:  # an enum: inline it, parameters are simple values
            prop = {**defs[prop.pop("$ref").rsplit("/", 1)[1]], **prop}
        param = {"name": name, "in": where, "schema": prop}
        if name in schema.get("required", ()):
            param["required"] = True
        out.append(param)
    return out


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A parameter not given is left out, never sent null: ``X | None`` is described as ``X``."""
    alternatives = [s for s in prop.get("anyOf", ()) if s.get("type") != "null"]
    if len(alternatives) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**alternatives[0], **rest}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _schemas(routes: Iterable[Route]) -> dict[str, Any]:
    """The component schemas of every model the routes name: requests as validated, answers as serialized."""
    models: dict[type[BaseModel], str] = {Error: "serialization"}
    for route in routes:
        if route.body is not None:
            models[route.body] = "validation"
        if route.response is not None:
            models[route.response] = "serialization"
        for _, model, _ in route.also:
            models[model] = "serialization"
    _, top = models_json_schema(list(models.items()), ref_template=REF)  # type: ignore[arg-type]
    return dict(top.get("$defs", {}))


def _job_request() -> dict[str, Any]:
    """``{source, params}`` as one alternative per registered source, each with its own params schema, and
    the schemas those params refer to (``{source}_{model}``)."""
    variants: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for s in all_sources():
        params = s.params_model.model_json_schema(ref_template=REF.format(model=s.name + "_{model}"))
        for name, schema in params.pop("$defs", {}).items():
            extra[f"{s.name}_{name}"] = schema
        variants.append(
            {
                "type": "object",
                "title": f"{s.name} job",
                "additionalProperties": False,
                "required": ["source"],
                "properties": {"source": {"type": "string", "enum": [s.name]}, "params": params},
            }
        )
    return {JobRequest.__name__: {"oneOf": variants, "discriminator": {"propertyName": "source"}}, **extra}
