"""HTTP function ``api``: the public API (``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/sources``)."""

import functions_framework
import orjson
from flask import Request, Response

from common import bind_request, setup_logging
from common.runtime.api import MAX_BODY, finish, handle, headers_refusal, let_headers_through, refusal
from common.runtime.auth import guard

setup_logging()
let_headers_through()


@functions_framework.http
def api(request: Request) -> Response:
    lowered = {k.lower(): v for k, v in request.headers.items()}
    bind_request(lowered)
    body, status, headers = finish(
        headers_refusal(lowered)
        or guard("api", request.path, lowered)
        or handle(
            request.method,
            request.path,
            query=request.args.to_dict(),
            headers=lowered,
            body=request.stream.read(MAX_BODY + 1),
        )
    )
    return Response(orjson.dumps(body), status, headers, content_type="application/json")


@functions_framework.errorhandler(Exception)
def not_html(exc: Exception) -> Response:
    """What Flask answers itself (a path its catch-all route does not match, e.g. one with a newline), as JSON."""
    body, status, headers = refusal(exc)
    return Response(orjson.dumps(body), status, headers, content_type="application/json")
