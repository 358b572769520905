"""The api's cold start loads what answering a request needs, not the ingest runner or the source contract (P2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Modules the api function never needs to start: the ingest runner (output store, Pub/Sub, secrets, Arrow
#: schemas), the source contract and what only it uses (warehouse load rules, column schemas, paginators).
#: They load on first use: a source's module loads the contract when a request names that source.
NOT_AT_START = (
    "common.runtime.ingest",
    "common.sources.base",
    "common.core.warehouse",
    "common.core.schema",
    "common.core.paging",
    "common.gcp.objects",
    "common.gcp.pubsub",
    "common.gcp.secrets",
)


def _run(code: str) -> object:
    """The JSON the code prints last, run in a fresh interpreter without Tributary's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_api_starts_without_the_ingest_runner_or_the_source_contract() -> None:
    code = (
        f"import json, sys, functions.api\nprint(json.dumps(sorted(m for m in {NOT_AT_START!r} if m in sys.modules)))\n"
    )
    assert _run(code) == []


def test_what_the_api_left_out_loads_when_a_request_needs_it() -> None:
    """Listing the sources (no cloud call for the registry) and planning with a source's context work cold."""
    code = (
        "import json, sys\n"
        "from common.runtime.api import handle\n"
        "from common.runtime.context import source_context\n"
        "from common.sources import get_source\n"
        "health = handle('GET', '/healthz', query={}, headers={}, body=b'')\n"
        "doc = handle('GET', '/v1/openapi.json', query={}, headers={}, body=b'')\n"
        "with source_context(get_source('fred')) as ctx:\n"
        "    kind = type(ctx).__module__ + '.' + type(ctx).__name__\n"
        "print(json.dumps({'health': health[:2], 'doc': doc[1], 'context': kind,\n"
        "                  'contract': 'common.sources.base' in sys.modules}))\n"
    )
    assert _run(code) == {
        "health": [{"ok": True}, 200],
        "doc": 200,
        "context": "common.sources.context.Context",
        "contract": True,
    }


def test_the_contract_still_exports_the_context() -> None:
    from common.sources.base import Context
    from common.sources.context import Context as Moved

    assert Context is Moved


def test_functions_skip_pydantics_plugin_scan_unless_told_otherwise() -> None:
    code = "import json, os, functions.api\nprint(json.dumps(os.environ.get('PYDANTIC_DISABLE_PLUGINS')))\n"
    assert _run(code) == "__all__"
    explicit = "import os\nos.environ['PYDANTIC_DISABLE_PLUGINS'] = ''\n" + code
    assert _run(explicit) == ""
