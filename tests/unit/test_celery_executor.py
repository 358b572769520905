"""The Celery executor's pure parts: Cloud Tasks' backoff, the rollback flag's setting, and no Celery at cold start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.celeryq import backoff, queue_name
from common.celeryq.dispatch import _redact
from common.core.errors import ConfigError
from common.core.tasks import QueueConfig
from common.local import redis as local_redis
from common.runtime import executors
from common.settings import Settings


def test_backoff_doubles_max_doublings_times_then_grows_linearly_up_to_max_backoff() -> None:
    q = QueueConfig(min_backoff=10, max_backoff=300, max_doublings=3, max_attempts=10)
    assert [backoff(a, q) for a in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]
    assert backoff(0, q) == 10


def test_the_dispatch_setting_is_the_rollback_flag() -> None:
    assert executors.chosen(Settings.from_env({}))[0] == "cloudtasks"
    s = Settings.from_env({"TRIBUTARY_DISPATCH": "celery", "TRIBUTARY_CELERY_BROKER_URL": "redis://h:1/2"})
    assert (executors.chosen(s)[0], s.celery_broker_url) == ("celery", "redis://h:1/2")
    with pytest.raises(ConfigError, match="TRIBUTARY_DISPATCH"):
        executors.dispatcher(s=Settings.from_env({"TRIBUTARY_DISPATCH": "rabbit"}))
    assert queue_name("fred", s) == "ingest-fred"


def test_a_broker_password_never_shows() -> None:
    assert _redact("redis://:s3cret@cache:6379/0") == "redis://***@cache:6379/0"
    assert _redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_cloud_tasks_functions_never_import_celery() -> None:
    code = (
        "import sys, functions.api, functions.ingest, functions.status; "
        "print(sorted(m for m in ('celery', 'kombu', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_missing_redis_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_redis.shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match=r"sudo apt-get install redis-server"):
        local_redis.redis_server_path()


def test_the_worker_command_refuses_an_unknown_source_in_one_line() -> None:
    from typer.testing import CliRunner

    from common.ops.cli import app

    result = CliRunner().invoke(app, ["worker", "--sources", "nope"])
    assert result.exit_code == 1 and "unknown source(s) nope" in result.output
    assert "Traceback" not in result.output


def test_the_worker_consumes_one_queue_per_source_with_prefork() -> None:
    from common.runtime.workers.celery_app import app, worker_argv

    assert "tributary.ingest" in app.tasks
    task = app.tasks["tributary.ingest"]
    assert task.acks_late and task.reject_on_worker_lost
    argv = worker_argv(concurrency=3, sources=["fred", "gdelt"])
    assert "--pool=prefork" in argv and "--concurrency=3" in argv and "--queues=ingest-fred,ingest-gdelt" in argv
    assert f"--hostname=tributary-{os.getpid()}@%h" in argv, "a name of its own (queue controls address workers)"
    assert {q.name for q in app.conf.task_queues} >= {"ingest-fred", "ingest-gdelt"}
