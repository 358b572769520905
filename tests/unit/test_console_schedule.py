"""The console's schedule in words and next run times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.runtime.console.app import ui_root
from common.runtime.console.schedule import in_words, next_runs
from common.sources import all_sources


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("40 5 * * *", "every day at 05:40 UTC"),
        ("3,18,33,48 * * * *", "every hour at minutes 3, 18, 33 and 48 (UTC)"),
        ("20 * * * *", "every hour at minute 20 (UTC)"),
        ("*/15 * * * *", "every 15 minutes (UTC)"),
        ("0 6 * * 1", "every Monday at 06:00 UTC"),
        ("0 6 1 * *", "cron 0 6 1 * * (UTC)"),
    ],
)
def test_in_words(cron: str, words: str) -> None:
    assert in_words(cron) == words


def test_every_source_s_schedule_reads_as_words() -> None:
    for source in all_sources():
        assert not in_words(source.schedule.cron, source.schedule.time_zone).startswith("cron"), source.name


def test_next_runs_in_the_source_s_time_zone() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert next_runs("15 4 * * *", "America/Chicago", count=2, now=now) == [
        "2026-12-04T10:15:00+00:00",
        "2026-12-05T10:15:00+00:00",
    ]


@pytest.mark.parametrize(("path", "root"), [("/ui", "ui"), ("/ui/", "."), ("/ui/sources", "."), ("/ui/jobs/x", "..")])
def test_the_ui_root_is_relative(path: str, root: str) -> None:
    assert ui_root(path) == root
