"""HTTP function ``ingest``: the Cloud Tasks target that runs one ingest task.

Deployed once per source with ``TRIBUTARY_SOURCE`` set, so each source has its own memory size,
timeout and concurrency; locally one process serves every source at ``/<source>``.
"""

import functions_framework
import orjson
from flask import Request, Response

from common import bind_request, setup_logging
from common.runtime.auth import guard
from common.runtime.outcomes import answer_task
from common.settings import settings

setup_logging()


@functions_framework.http
def ingest(request: Request) -> Response:
    lowered = {k.lower(): v for k, v in request.headers.items()}
    bind_request(lowered)
    body, status, headers = guard("ingest", request.path, lowered) or answer_task(
        request.get_data(),
        lowered,
        expected_source=settings().source or None,
        path=request.path,
    )
    return Response(orjson.dumps(body), status, headers, content_type="application/json")
