"""The Firestore composite indexes the repositories' queries need: one declared list, which deploy.sh creates.

Firestore serves a query from its automatic single-field indexes when it has equality filters only, or one
ordered field and nothing else; any other shape (equality filters with an order on another field) needs a
composite index, or real Firestore answers ``FAILED_PRECONDITION`` (the emulator needs none, so only a test
that walks every query can tell: ``tests/unit/test_indexes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from common.gcp.names import JOBS, RUNS

__all__ = ["INDEXES", "JOB_FILTERS", "Index", "covers", "needed"]

#: The equality filters of :func:`common.gcp.firestore.jobs.list_jobs`, in any combination, newest first.
JOB_FILTERS = ("source", "status", "batch_id")

Order = tuple[str, str]  # (field, "ascending" | "descending")


@dataclass(frozen=True)
class Index:
    """A composite index on one collection (group): the equality fields ascending, then the ordered fields."""

    collection: str
    equalities: tuple[str, ...]
    orders: tuple[Order, ...]

    @property
    def fields(self) -> tuple[Order, ...]:
        return tuple((name, "ascending") for name in self.equalities) + self.orders

    def spec(self) -> str:
        """``field:order,...``, as the deployment plan prints it."""
        return ",".join(f"{name}:{order}" for name, order in self.fields)


def needed(collection: str, equalities: Iterable[str], orders: Sequence[Order]) -> Index | None:
    """The composite index a query of this shape needs; None when single-field indexes serve it."""
    eq = tuple(sorted(set(equalities)))
    ordered = tuple(o for o in orders if o[0] not in eq)
    if not ordered or (not eq and len(ordered) == 1):
        return None
    return Index(collection, eq, ordered)


def covers(index: Index, wanted: Index) -> bool:
    """Whether ``index`` serves a query needing ``wanted``: the same equality fields (in any order), then
    the same ordered fields."""
    return (
        index.collection == wanted.collection
        and set(index.equalities) == set(wanted.equalities)
        and index.orders == wanted.orders
    )


def _jobs_newest_first() -> list[Index]:
    out = []
    for size in range(1, len(JOB_FILTERS) + 1):
        for combo in combinations(JOB_FILTERS, size):
            index = needed(JOBS, combo, [("created_at", "descending")])
            assert index is not None
            out.append(index)
    return out


#: Every composite index, created by deploy.sh (``gcloud firestore indexes composite create``, idempotent).
INDEXES: tuple[Index, ...] = (
    *_jobs_newest_first(),
    # common.gcp.firestore.sources.last_runs: a source's last successful run (status ==, newest first).
    Index(RUNS, ("status",), (("finished_at", "descending"),)),
)
