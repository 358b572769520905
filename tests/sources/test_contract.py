"""The contract every registered source keeps (STYLE.md §10): one parametrized suite over the registry."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from croniter import croniter

from common.core.errors import ConfigError
from common.core.schema import TYPES, arrow_schema
from common.sources import BUILTIN, all_sources, get_source
from common.sources.base import Context, Params, Source, SourceState

IDS = [s.name for s in all_sources()]
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "common" / "local" / "samples"


@pytest.fixture(params=all_sources(), ids=IDS)
def source(request: pytest.FixtureRequest) -> Source:
    return request.param


def test_names_are_unique_and_task_safe() -> None:
    assert len(IDS) == len(set(IDS))
    assert all(n.isidentifier() and n.islower() for n in IDS)


def test_the_registry_imports_a_source_only_when_asked() -> None:
    """A cold ingest function imports the one source it serves (the other modules cost ~100 ms)."""
    code = (
        "import sys, functions.ingest, functions.api, functions.status\n"
        "from common.sources import get_source\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.startswith('common.sources.'))\n"
        "print(loaded()); get_source('fred'); print(loaded())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    fred = ["common.sources.fred", *(f"common.sources.fred.{m}" for m in ("client", "params", "parse", "source"))]
    contract = ["common.sources.base", "common.sources.context"]
    assert out.splitlines() == [str(contract), str(sorted([*contract, *fred]))]


def test_an_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown source 'nope'; known sources: comtrade, fred, gdelt"):
        get_source("nope")


def test_a_registry_entry_must_load_the_source_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN, "wrong", BUILTIN["fred"])
    with pytest.raises(ConfigError, match=r"BUILTIN\['wrong'\] loads a source named 'fred'"):
        get_source("wrong")


def test_schedule_is_a_valid_cron_in_a_real_time_zone(source: Source) -> None:
    from zoneinfo import ZoneInfo

    assert croniter.is_valid(source.schedule.cron), source.schedule.cron
    ZoneInfo(source.schedule.time_zone)


def test_queue_settings_are_within_cloud_tasks_limits(source: Source) -> None:
    q = source.queue
    assert 0 < q.max_dispatches_per_second <= 500
    assert 1 <= q.max_concurrent_dispatches <= 5000
    assert q.max_attempts == -1 or q.max_attempts >= 1
    assert 0 < q.min_backoff <= q.max_backoff
    assert 15 <= q.dispatch_deadline <= 1800, "Cloud Tasks allows 15 s to 30 min"


def test_params_model_rejects_unknown_fields(source: Source) -> None:
    from common.core.errors import BadParams

    assert issubclass(source.params_model, Params)
    with pytest.raises(BadParams) as info:
        source.validate_params({**source.demo_params, "no_such_field": 1})
    assert info.value.field == "params.no_such_field"


def test_demo_and_daily_params_are_valid(source: Source) -> None:
    source.validate_params(source.demo_params)
    source.validate_params(source.daily_params)


def test_schemas_use_bigquery_types_that_arrow_can_write(source: Source) -> None:
    assert source.schemas
    for columns in source.schemas.values():
        names = [c.name for c in columns]
        assert len(names) == len(set(names))
        assert all(c.type in TYPES for c in columns)
        assert arrow_schema(columns)


def test_parse_is_pure(source: Source) -> None:
    signature = inspect.signature(source.parse)
    assert list(signature.parameters) == ["stream", "part"], "parse sees only the payload and the part"


def test_each_source_ships_its_own_samples(source: Source) -> None:
    folder = SAMPLES / source.name
    assert folder.is_dir() and any(folder.iterdir()), f"common/local/samples/{source.name}/ holds make demo's samples"


def test_dedup_params_are_stable(source: Source) -> None:
    params = source.validate_params(source.demo_params)
    now = datetime(2024, 1, 15, 12, 5, tzinfo=UTC)
    assert source.dedup_params(params, now) == source.dedup_params(params, now)


def test_base_url_can_be_overridden(source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"TRIBUTARY_{source.name.upper()}_BASE_URL", "http://127.0.0.1:9/mirror/")
    assert source.base_url() == "http://127.0.0.1:9/mirror"


def test_the_context_reads_the_state_on_first_use_only() -> None:
    """A task that never looks at ``ctx.state`` (a fan-out part, gdelt) costs Firestore nothing."""
    reads: list[int] = []

    def load() -> SourceState:
        reads.append(1)
        return SourceState(cursors={"DFF": "2024-05-01"})

    ctx = Context(http=None, base_url="", workdir=Path("."), state=load, now=datetime.now(UTC))  # type: ignore[arg-type]
    assert reads == []
    assert ctx.state.cursors == {"DFF": "2024-05-01"} and ctx.state is ctx.state
    assert reads == [1]
