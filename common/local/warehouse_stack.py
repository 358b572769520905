"""The local stack's BigQuery and GCS emulators (``StackConfig.bigquery``): outputs on ``gs://`` and loads
into BigQuery with the stock clients, as in production, all on 127.0.0.1 and offline."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

from common.local.processes import http_ready, tcp_ready

#: The bucket the GCS emulator starts with; the functions write their outputs under it.
LOCAL_BUCKET = "tributary-local"


class _Stack(Protocol):
    ports: dict[str, int]

    def _python(self, name: str, module: str, *args: str, env: dict[str, str] | None = None) -> None: ...

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> object: ...

    def _wait(self, name: str, check: Callable[[], bool], what: str) -> None: ...


def start_warehouse_emulators(stack: _Stack, host: str, project: str) -> dict[str, str]:
    """Start the GCS emulator (gcp-storage-emulator, in memory) and the BigQuery emulator, wait for both, and
    return the functions' environment for them.

    Raises:
        ConfigError: an emulator did not start (from the stack's wait).
    """
    gcs, bq = stack.ports["gcs"], stack.ports["bigquery"]
    stack._spawn(
        "gcs",
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", host, "--port", str(gcs),
         "--in-memory", "--default-bucket", LOCAL_BUCKET, "--quiet"],
    )  # fmt: skip
    stack._python(
        "bigquery", "common.local.emulators.bigquery", "--host", host, "--port", str(bq), "--project", project
    )
    stack._wait("gcs", tcp_ready(gcs), "the GCS emulator")
    stack._wait(
        "bigquery", http_ready(f"http://{host}:{bq}/bigquery/v2/projects/{project}/datasets"), "the BigQuery emulator"
    )
    return {
        "STORAGE_EMULATOR_HOST": f"http://{host}:{gcs}",
        "TRIBUTARY_OUTPUT_URI": f"gs://{LOCAL_BUCKET}/data",
        "TRIBUTARY_WAREHOUSE": "bigquery",
        "TRIBUTARY_BIGQUERY_EMULATOR_HOST": f"http://{host}:{bq}",
    }
