"""What a job document holds beside the job: its applied events' markers (``events``) and its load reports (``loads``).

Both are maps inside ``jobs/{id}`` rather than documents of their own, so that applying an event costs one read
and one write of the job (not a marker document read and written too) and recording a load one write. Every
write of the job from here on is an ``update`` of the job's own fields plus the map entries it changes, so the
status function's writes keep the load's reports and the load's writes keep the job.

Documents written before this layout keep their markers in ``jobs/{id}/events/{event_id}`` and their loads'
sum in ``load``: both are still read (:func:`job_of`, ``reads.job_events``), and never written again.
An event whose marker is in the old place is applied again if it is redelivered: the job's fields are joins
over the events seen (``common.core.jobs.apply_event``), so that changes nothing but the marker it adds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from common.core.events import Event
from common.core.jobs import Job
from common.core.ports import MAX_TIMELINE
from common.core.warehouse import summarize_loads
from common.gcp.firestore.codec import EXPIRE_AT, expire_at, from_firestore, timestamp, to_firestore
from common.gcp.firestore.query import bounded_call
from common.gcp.names import EVENTS, JOBS, PARTS

#: The job document's map of applied events: event id → marker (``Event.marker``, the console's timeline).
EVENTS_FIELD = "events"
#: The job document's map of load reports: key (a part's, or ``job``) → report; the job's ``load`` is their sum.
LOADS_FIELD = "loads"
#: The job's field that the load stage owns (the earlier layout's stored sum), never written with the job's state.
LOAD_FIELD = "load"


def field_path(*names: str) -> str:
    """A field path to a map entry, its names quoted where they need it (event ids hold dots)."""
    from google.cloud.firestore_v1.field_path import FieldPath

    return str(FieldPath(*names).to_api_repr())


def marker(event: Event) -> dict[str, Any]:
    """An applied event's marker (``Event.marker``), its time a Timestamp."""
    return {**event.marker(), "time": timestamp(event.time)}


def legacy_marker(event: Event) -> dict[str, Any]:
    """:func:`marker` as a document of its own (``jobs/{id}/events/{id}``, the earlier layout), expiring."""
    stamp = timestamp(event.time)
    return {**marker(event), EXPIRE_AT: expire_at(stamp)}


def applied(data: dict[str, Any], event: Event) -> bool:
    """Whether the stored job document ``data`` holds ``event``'s marker."""
    return event.id in (data.get(EVENTS_FIELD) or {})


#: A part document's map of its applied events (each attempt of the part that reported): event id → marker.
PART_EVENTS_FIELD = "markers"


#: Map fields no query reads: deploy.sh exempts them from single-field indexing, or every marker and report would
#: add index entries to each write (slower writes, and a document has at most 40,000 of them).
UNINDEXED = ((JOBS, EVENTS_FIELD), (JOBS, LOADS_FIELD), (PARTS, PART_EVENTS_FIELD))


def part_applied(part: dict[str, Any], event: Event) -> bool:
    """Whether the stored part document ``part`` holds ``event``'s marker (a part's events mark its part)."""
    return event.id in (part.get(PART_EVENTS_FIELD) or {})


def part_doc(part: dict[str, Any], event: Event) -> dict[str, Any]:
    """``jobs/{id}/parts/{key}`` after ``event``: the part's progress event's data, expiring with the retention,
    and the markers of every event that reported the part (the stored ``part``'s and this one)."""
    out = to_firestore(event.data, expires_from=timestamp(event.time))
    out[PART_EVENTS_FIELD] = {**(part.get(PART_EVENTS_FIELD) or {}), event.id: marker(event)}
    return out


def job_of(data: dict[str, Any]) -> Job:
    """The job in a stored document: its ``load`` is the sum of its reports (or, written by the earlier layout,
    the stored sum)."""
    job = Job.model_validate(from_firestore(data))
    reports = data.get(LOADS_FIELD)
    if reports:
        job.load = summarize_loads([reports[key] for key in sorted(reports)])
    return job


def job_fields(job: Job) -> dict[str, Any]:
    """The job's own fields as an update (times as Timestamps, the retention from its last change); not its
    ``load``, which is the load stage's."""
    fields = to_firestore(job, expires_from=job.updated_at)
    fields.pop(LOAD_FIELD, None)
    return fields


def with_marker(fields: dict[str, Any], data: dict[str, Any], event: Event) -> dict[str, Any]:
    """``fields`` plus ``event``'s marker in the stored document ``data``'s map, dropping the oldest markers
    beyond :data:`MAX_TIMELINE` (a dropped marker only costs a redelivery of that event one more write)."""
    from google.cloud.firestore_v1 import DELETE_FIELD

    out = {**fields, field_path(EVENTS_FIELD, event.id): marker(event)}
    markers = data.get(EVENTS_FIELD) or {}
    excess = len(markers) + 1 - MAX_TIMELINE
    if excess > 0:
        oldest = sorted(markers, key=lambda k: (time_text(markers[k]), k))[:excess]
        out.update({field_path(EVENTS_FIELD, key): DELETE_FIELD for key in oldest})
    return out


def time_text(m: Any) -> str:
    """A stored marker's time as sortable text (a Timestamp in UTC, or the text an earlier version stored)."""
    value = m.get("time") if isinstance(m, dict) else None
    return timestamp(value).isoformat() if isinstance(value, datetime) else str(value or "")


def stored_markers(job_ref: Any) -> dict[str, dict[str, Any]]:
    """Every stored marker of the job at ``job_ref``, by event id (as stored: Timestamps, or an earlier version's
    text): those in the job document, its parts' and the earlier layout's documents (``jobs/{id}/events``)."""
    snap = job_ref.get(**bounded_call())
    found: dict[str, dict[str, Any]] = dict((snap.to_dict() or {}).get(EVENTS_FIELD) or {}) if snap.exists else {}
    for part in job_ref.collection(PARTS).limit(MAX_TIMELINE).stream(**bounded_call()):
        for event_id, m in ((part.to_dict() or {}).get(PART_EVENTS_FIELD) or {}).items():
            found.setdefault(event_id, m)
    for old in job_ref.collection(EVENTS).limit(MAX_TIMELINE).stream(**bounded_call()):
        found.setdefault(old.id, old.to_dict() or {})
    return found
