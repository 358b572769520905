"""HTTP function ``api``: the public API (``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/sources``)."""

import functions_framework
import orjson
from flask import Request, Response

from common import bind_request, setup_logging
from common.runtime.api import MAX_BODY, handle
from common.runtime.auth import guard

setup_logging()


@functions_framework.http
def api(request: Request) -> Response:
    lowered = {k.lower(): v for k, v in request.headers.items()}
    bind_request(lowered)
    body, status, headers = guard("api", request.path, lowered) or handle(
        request.method,
        request.path,
        query=request.args.to_dict(),
        headers=lowered,
        body=request.stream.read(MAX_BODY + 1),
    )
    return Response(orjson.dumps(body), status, headers, content_type="application/json")
