"""The examples of docs/emulators.md run as written, against emulators on free ports in place of the defaults."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from common.local.emulators.scheduler import SchedulerEmulator
from common.local.emulators.tasks import TasksEmulator

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "emulators.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_page_has_both_ways_in() -> None:
    blocks = python_blocks(PAGE)
    assert len(blocks) == 2 and 'transport="rest"' in blocks[0] and "insecure_channel" in blocks[1]


EXPECTED = {
    0: "projects/tributary-local/locations/us-central1/queues/docs-rest RUNNING\n['us-central1', ",
    1: "[]\n[]\n",  # fresh emulators: no queue, no job
}


@pytest.mark.parametrize("index", [0, 1], ids=["rest", "grpc"])
def test_the_client_examples_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    with TasksEmulator(rest_port=0) as tasks, SchedulerEmulator(rest_port=0, fire=False) as scheduler:
        assert tasks.rest_url and scheduler.rest_url
        ports = {
            "127.0.0.1:8123": tasks.address,
            "127.0.0.1:8127": tasks.rest_url.removeprefix("http://"),
            "127.0.0.1:8124": scheduler.address,
            "127.0.0.1:8128": scheduler.rest_url.removeprefix("http://"),
        }
        code = python_blocks(PAGE)[index]
        for default, actual in ports.items():
            code = code.replace(default, actual)
        exec(compile(code, f"{PAGE.name}[{index}]", "exec"), {})  # the documentation's own code
    assert capsys.readouterr().out.startswith(EXPECTED[index])


@pytest.mark.parametrize("module", ["tasks", "scheduler"])
def test_the_standalone_command_prints_its_ports(module: str) -> None:
    argv = [sys.executable, "-m", f"common.local.emulators.{module}", "--port", "0", "--rest-port", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"on 127\.0\.0\.1:(\d+) rest=(http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        version = "v2" if module == "tasks" else "v1"
        answer = httpx.get(f"{m.group(2)}{version}/projects/p/locations", timeout=10).json()
        assert "us-central1" in [loc["locationId"] for loc in answer["locations"]]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
