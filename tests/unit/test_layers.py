"""The layer rule is enforced: `make lint` (lint-imports) refuses an import that crosses it, and modules stay small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "functions", "scheduler")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
#: "about 400 lines" (the issue that set the layout); a module that grows past this wants splitting by concern.
MAX_LINES = 420


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the code and of pyproject.toml's contracts, to break on purpose."""
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed in this environment (make venv installs it)")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _add_import(module: Path, line: str) -> None:
    text = module.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    module.write_text(head + sep + line + "\n" + rest if sep else line + "\n" + text)


def test_the_layers_hold_today(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("common/core/jobs.py", "import google.cloud.firestore", "core and runtime never import Google's libraries"),
        ("common/runtime/ingest.py", "from common.local import stack", "Only ops (and tests) use the local stack"),
        ("common/gcp/tasks.py", "import common.runtime.outcomes", "Layers"),
        ("common/sources/fred/client.py", "import common.sources.gdelt", "Sources do not know each other"),
    ],
)
def test_an_import_across_the_rule_fails_lint(tree: Path, module: str, line: str, contract: str) -> None:
    _add_import(tree / module, line)
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def test_no_module_is_over_about_400_lines() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
