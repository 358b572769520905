"""CloudEvent function ``load``: loads a job's Parquet outputs into the warehouse (the ``load-push`` push)."""

import functions_framework
import orjson
from cloudevents.http import CloudEvent
from flask import Response, abort, request

from common import setup_logging
from common.runtime.auth import guard
from common.runtime.load import handle_pubsub

setup_logging()


@functions_framework.cloud_event
def load(cloud_event: CloudEvent) -> None:
    if denied := guard("load", request.path, dict(request.headers.items())):  # before the event is looked at
        body, code, headers = denied
        abort(Response(orjson.dumps(body), code, headers, content_type="application/json"))
    handle_pubsub(cloud_event.data)
