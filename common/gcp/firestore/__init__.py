"""Firestore repositories: the only modules that read or write Firestore documents.

- :mod:`.jobs`: ``jobs/{id}`` with its event markers and parts (event application, progress by counting).
- :mod:`.sources`: ``sources/{name}`` and its ``runs`` (watermarks, cursors, last runs).
- :mod:`.batches`: ``batches/{id}``.
- :mod:`.deadletters`: ``dead_events/{message_id}``.
- :mod:`.query`: the client, bounded calls and the one count aggregation they share.

The job and source functions are re-exported here, where the runtime has always called them.
"""

from common.gcp.firestore.jobs import (
    count_parts,
    create_job,
    finish_if_complete,
    get_job,
    list_jobs,
    record_event,
)
from common.gcp.firestore.sources import run_record, source_state, source_states, update_source
from common.gcp.names import EVENTS, JOBS, PARTS, RUNS, SOURCES

__all__ = [
    "EVENTS",
    "JOBS",
    "PARTS",
    "RUNS",
    "SOURCES",
    "count_parts",
    "create_job",
    "finish_if_complete",
    "get_job",
    "list_jobs",
    "record_event",
    "run_record",
    "source_state",
    "source_states",
    "update_source",
]
