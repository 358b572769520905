"""CloudEvent function ``status``: applies job events from the ``ingest-events`` Pub/Sub push to Firestore."""

import functions_framework
from cloudevents.http import CloudEvent

from common import setup_logging
from common.status import handle_pubsub

setup_logging()


@functions_framework.cloud_event
def status(cloud_event: CloudEvent) -> None:
    handle_pubsub(cloud_event.data)
