"""HTTP function ``api``: the public API (``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/sources``)."""

import functions_framework
import orjson
from flask import Request, Response

from common import bind_request, setup_logging
from common.runtime.api import (
    MAX_BODY,
    cross_site_refusal,
    finish,
    handle,
    headers_refusal,
    let_headers_through,
    refusal,
)
from common.runtime.auth import guard

setup_logging()
let_headers_through()


@functions_framework.http
def api(request: Request) -> Response:
    lowered = {k.lower(): v for k, v in request.headers.items()}
    bind_request(lowered)
    refused = headers_refusal(lowered) or guard("api", request.path, lowered)
    if refused is None and (request.path == "/ui" or request.path.startswith("/ui/")):
        return console(request, lowered)
    if refused is None and request.path == "/" and "text/html" in lowered.get("accept", ""):
        return Response(b"", 302, {"Location": "ui/"})  # a browser at the api's root finds the console
    body, status, headers = finish(
        refused
        or cross_site_refusal(request.method, lowered)
        or handle(
            request.method,
            request.path,
            query=request.args.to_dict(),
            headers=lowered,
            body=request.stream.read(MAX_BODY + 1),
        )
    )
    return Response(orjson.dumps(body), status, headers, content_type="application/json")


def console(request: Request, lowered: dict[str, str]) -> Response:
    """The operator console (``/ui``), authenticated above like the API."""
    from common.runtime.console import serve  # only when /ui is asked for: the api's cold start never pays for it

    query, body = request.args.to_dict(), request.stream.read(MAX_BODY + 1)
    content, status, headers = serve(request.method, request.path, query=query, headers=lowered, body=body)
    return Response(content, status, headers)


@functions_framework.errorhandler(Exception)
def not_html(exc: Exception) -> Response:
    """What Flask answers itself (a path its catch-all route does not match, e.g. one with a newline), as JSON."""
    body, status, headers = refusal(exc)
    return Response(orjson.dumps(body), status, headers, content_type="application/json")
