"""The README's examples run as written: every ```sh block marked ``<!-- runnable -->``, in order, from a fresh
folder (so ``tributary dev up`` starts a stack of its own there), on the bundled samples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = "<!-- runnable -->"
#: Seconds one block may take (a stack's start under load included).
BLOCK_TIMEOUT = 300


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the ```sh blocks that directly follow the marker line."""
    return re.findall(rf"^{re.escape(MARKER)}\n```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_the_marker_finds_blocks() -> None:
    text = f"x\n{MARKER}\n```sh\necho a\n```\n```sh\necho skipped\n```\n{MARKER}\n```sh\necho b\n```\n"
    assert runnable_blocks(text) == ["echo a\n", "echo b\n"]
    blocks = runnable_blocks(README.read_text())
    assert len(blocks) >= 2 and any("tributary dev up" in b for b in blocks)


def test_the_readme_examples_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUTARY_", "GOOGLE_CLOUD_PROJECT"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TRIBUTARY_NO_SECRET_MANAGER"] = "1"
    try:
        for index, block in enumerate(runnable_blocks(README.read_text())):
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
            )
            assert done.returncode == 0, f"README block {index} failed:\n{block}\n{done.stdout}\n{done.stderr}"
    finally:
        subprocess.run(["tributary", "dev", "down"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
