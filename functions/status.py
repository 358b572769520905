"""CloudEvent function ``status``: applies job events from the ``ingest-events`` Pub/Sub push to Firestore."""

import functions_framework
import orjson
from cloudevents.http import CloudEvent
from flask import Response, abort, request

from common import bind_request, setup_logging
from common.runtime.auth import guard
from common.runtime.status import handle_pubsub

setup_logging()


@functions_framework.cloud_event
def status(cloud_event: CloudEvent) -> None:
    bind_request({k.lower(): v for k, v in request.headers.items()})
    if denied := guard("status", request.path, dict(request.headers.items())):  # before the event is looked at
        body, code, headers = denied
        abort(Response(orjson.dumps(body), code, headers, content_type="application/json"))
    handle_pubsub(cloud_event.data)
