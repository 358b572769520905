"""Every query the Firestore repositories build has the composite index it needs in the declared list.

The emulator serves any query without indexes, so only this walk tells that real Firestore would answer
``FAILED_PRECONDITION``: the repositories run against a recorder that keeps each query's shape.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from common.gcp.firestore import indexes, jobs, reads, sources
from common.gcp.firestore.indexes import INDEXES, Index, covers, needed

REPOS = Path(indexes.__file__).parent


class Recorder:
    """A collection or query: remembers equality filters and orders; ``stream``/``count`` log the shape."""

    def __init__(self, log: list[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]], name: str) -> None:
        self.log, self.name = log, name
        self.eq: list[str] = []
        self.orders: list[tuple[str, str]] = []
        self.ranges: list[str] = []

    def _copy(self) -> Recorder:
        new = Recorder(self.log, self.name)
        new.eq, new.orders, new.ranges = list(self.eq), list(self.orders), list(self.ranges)
        return new

    def document(self, _id: str) -> Any:
        outer = self

        class Doc:
            def collection(self, name: str) -> Recorder:
                return Recorder(outer.log, name)

        return Doc()

    def where(self, *, filter: Any) -> Recorder:
        new = self._copy()
        if filter.op_string == ">=":  # codec.newest_first: a range on the field it orders by
            new.ranges.append(filter.field_path)
            return new
        assert filter.op_string == "==", "another range filter: teach indexes.needed about it"
        new.eq.append(filter.field_path)
        return new

    def order_by(self, field: str, direction: str = "ASCENDING") -> Recorder:
        new = self._copy()
        new.orders.append((field, direction.lower()))
        return new

    def limit(self, _n: int) -> Recorder:
        return self._copy()

    def _record(self) -> None:
        # A range on the first ordered field is served by the index of the equalities and that order; a range
        # on any other field would need another index.
        assert all(self.orders and field == self.orders[0][0] for field in self.ranges), "teach indexes.needed"
        self.log.append((self.name, tuple(self.eq), tuple(self.orders)))

    def stream(self, **_: Any) -> list[Any]:
        self._record()
        return []

    def count(self) -> Any:
        self._record()

        class Agg:
            def get(self, **_: Any) -> list[list[Any]]:
                return [[type("V", (), {"value": 0})()]]

        return Agg()


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]]:
    """Run every query builder of the repositories, with every combination of its optional filters."""
    log: list[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]] = []

    class Db:
        def collection(self, name: str) -> Recorder:
            return Recorder(log, name)

    for module in (jobs, sources, reads):
        monkeypatch.setattr(module, "db", lambda: Db())
    for size in range(len(indexes.JOB_FILTERS) + 1):
        for combo in itertools.combinations(indexes.JOB_FILTERS, size):
            jobs.list_jobs(**dict.fromkeys(combo, "x"))  # the api's GET /v1/jobs, the reaper, batch listings
            jobs.count_by(dict.fromkeys(combo, "x"))  # batch progress
    jobs.count_parts("j")
    jobs.count_parts("j", 2)  # a retry's run counts only its own parts
    sources.last_runs("gdelt")
    reads.recent_batches(5)  # the console's batches (its recent jobs are list_jobs with no filter, above)
    return log


def test_every_query_has_its_index(walked) -> None:
    missing = []
    for collection, eq, orders in walked:
        want = needed(collection, eq, orders)
        if want is not None and not any(covers(index, want) for index in INDEXES):
            missing.append(want)
    assert missing == []


def test_the_walk_reaches_the_queries_that_need_indexes(walked) -> None:
    wanted = {needed(*shape) for shape in walked} - {None}
    assert Index("jobs", ("source", "status"), (("created_at", "descending"),)) in wanted
    assert Index("runs", ("status",), (("finished_at", "descending"),)) in wanted
    assert len(wanted) == len(INDEXES), "an index nothing needs, or a query shape the walk misses"


def test_no_query_builder_is_left_out_of_the_walk() -> None:
    """A new ``.where(`` or ``order_by(`` in a repository must be added to the walk above (and to INDEXES)."""
    sites = {
        path.name: len(re.findall(r"\.where\(|\.order_by\(", path.read_text()))
        for path in REPOS.glob("*.py")
        if path.name != "indexes.py"
    }
    # codec.newest_first holds the ordered queries of jobs.list_jobs and sources.last_runs (one per stored type).
    assert {k: v for k, v in sites.items() if v} == {"jobs.py": 3, "sources.py": 1, "codec.py": 2}


def test_equality_only_and_single_order_queries_need_no_composite_index() -> None:
    assert needed("jobs", ["batch_id", "status"], []) is None
    assert needed("runs", [], [("finished_at", "descending")]) is None


def test_a_missing_index_answers_a_clear_503_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions_framework import create_app
    from google.api_core.exceptions import FailedPrecondition

    from common.gcp import firestore

    def refuse(**_: Any) -> list[Any]:
        raise FailedPrecondition("The query requires an index. You can create it here: https://example.test/x")

    monkeypatch.setenv("TRIBUTARY_AUTH", "off")
    monkeypatch.setattr(firestore, "list_jobs", refuse)
    client = create_app("api", str(Path(__file__).resolve().parents[2] / "functions" / "api.py")).test_client()
    r = client.get("/v1/jobs?source=gdelt&status=queued")
    assert r.status_code == 503, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["code"] == "backend_unavailable" and "index" in error["message"]
