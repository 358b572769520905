"""``make demo``: the local stack on the bundled samples, one job per source, a summary. Works offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from common.core.errors import ConfigError
from common.local.samples import materialize
from common.local.stack import Stack, StackConfig
from common.runtime.embedded import DuckDBWarehouse, quote
from common.sources import all_sources


def run_demo(state_dir: Path, *, timeout: float, console: Console, out: Console) -> bool:
    """Run the demo; True when every job succeeded. The stack is always stopped at the end."""
    replay = materialize(state_dir / "replay")
    stack = Stack(StackConfig(state_dir=state_dir, replay_dir=replay, auto_ports=True))
    with console.status("starting the local stack (emulators + functions)") as status:
        started = time.monotonic()
        state = stack.up(progress=status.update)
    console.print(f"local stack up in {time.monotonic() - started:.1f} s: api at {state.endpoints['api_url']}")
    results: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=state.endpoints["api_url"], timeout=30) as api:
            submitted = {}
            for source in all_sources():
                r = api.post("/v1/jobs", json={"source": source.name, "params": dict(source.demo_params)})
                if r.status_code != 202:
                    raise ConfigError(f"submitting {source.name} failed: {r.status_code} {r.text}")
                submitted[source.name] = (r.json()["job_id"], time.monotonic())
                console.print(f"submitted {source.name}: {r.json()['job_id']}")
            deadline = time.monotonic() + timeout
            pending = dict(submitted)
            with console.status("ingesting") as status:
                while pending and time.monotonic() < deadline:
                    for name, (job_id, t0) in list(pending.items()):
                        job = api.get(f"/v1/jobs/{job_id}").json()
                        if job["status"] in ("succeeded", "failed") and loaded(job):
                            job["seconds"] = time.monotonic() - t0
                            results.append(job)
                            del pending[name]
                            console.print(f"{name}: {job['status']} ({job['records']:,} records)")
                    status.update(f"ingesting and loading: waiting for {', '.join(sorted(pending)) or 'nothing'}")
                    time.sleep(0.3)
            for name, (job_id, _) in pending.items():
                results.append({**api.get(f"/v1/jobs/{job_id}").json(), "seconds": timeout})
                console.print(f"[red]{name}: did not finish within {timeout:.0f} s[/red]")
    finally:
        with console.status("stopping the local stack"):
            stack.down()
    print_summary(results, out)
    data_dir = Path(state.endpoints["output_uri"].removeprefix("file://"))
    written = sorted(
        str(Path(uri.removeprefix("file://")).relative_to(data_dir)) for job in results for uri in job["outputs"]
    )
    out.print(f"{len(written)} objects written under {data_dir}:")
    for name in written:
        out.print(f"  {name}")
    tables_ok = print_tables(Path(state.env["TRIBUTARY_WAREHOUSE_PATH"]), out)
    return all_succeeded(results) and tables_ok


def print_summary(results: list[dict[str, Any]], out: Console) -> None:
    """The demo's table, a row per source's job (a job that did not finish has only some fields), then errors."""
    table = Table("source", "job", "status", "records", "bytes", "outputs", "loaded", "seconds", title="demo summary")
    for job in sorted(results, key=lambda j: j["source"]):
        colour = "green" if job.get("status") == "succeeded" else "red"
        table.add_row(
            job["source"],
            job.get("job_id", ""),
            f"[{colour}]{job.get('status')}[/{colour}]",
            f"{job.get('records', 0):,}",
            f"{job.get('bytes', 0):,}",
            str(len(job.get("outputs", []))),
            _loaded_cell(job),
            f"{job['seconds']:.1f}",
        )
    out.print(table)
    for job in results:
        if job.get("error"):
            out.print(f"[red]{job['source']}[/red]: {job['error']['message']}")


def all_succeeded(results: list[dict[str, Any]]) -> bool:
    """Whether every source has a job that succeeded and whose load did not fail."""
    ok = all(j.get("status") == "succeeded" and (j.get("load") or {}).get("status") != "failed" for j in results)
    return ok and len(results) == len(all_sources())


def loaded(job: dict[str, Any]) -> bool:
    """Whether the load stage has recorded every Parquet output of a finished job (or nothing is to be loaded)."""
    expected = sum(1 for o in job.get("outputs", []) if o.endswith(".parquet"))
    load = job.get("load") or {}
    return job["status"] != "succeeded" or load.get("status") == "failed" or len(load.get("tables", [])) >= expected


def _loaded_cell(job: dict[str, Any]) -> str:
    load = job.get("load")
    if not load:
        return "-"
    if load.get("status") == "failed":
        return "[red]failed[/red]"
    return f"{load.get('rows', 0):,}"


def print_tables(path: Path, out: Console) -> bool:
    """The warehouse's tables and their row counts (``tributary query`` reads the same file)."""
    if not path.exists():
        out.print(f"[red]no warehouse at {path}[/red]")
        return False
    wh = DuckDBWarehouse(path)
    _, rows = wh.query(
        "select table_name from information_schema.tables where table_schema = 'main' "
        "and not starts_with(table_name, '_') order by 1"
    )
    table = Table("table", "rows", title=f"warehouse tables ({path})")
    for (name,) in rows:
        table.add_row(name, f"{wh.query(f'select count(*) from {quote(name)}')[1][0][0]:,}")
    out.print(table)
    out.print(f'query them with: tributary query "select count(*) from gdelt_events" --warehouse {path}')
    return bool(rows)
