"""``tributary sources SOURCE``: one source's params (type, default, description), schedule and next runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from rich.table import Table

from common.ops.cli.common import console, out

#: How many upcoming runs ``tributary sources SOURCE`` shows.
NEXT_RUNS = 3


def next_runs(cron: str, time_zone: str, *, count: int = NEXT_RUNS, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``cron`` fires in ``time_zone``, as aware datetimes in that zone."""
    zone = ZoneInfo(time_zone or "UTC")
    it = croniter(cron, (now or datetime.now(UTC)).astimezone(zone))
    return [it.get_next(datetime) for _ in range(count)]


def _type(prop: dict[str, Any]) -> str:
    """A JSON schema property's type, readably: ``list[string]``, ``string | null``, ``one of a, b``."""
    if "enum" in prop:
        return "one of " + ", ".join(str(v) for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list[{_type(prop.get('items', {}))}]"
    if "anyOf" in prop:
        return " | ".join(_type(p) for p in prop["anyOf"])
    return str(prop.get("format") or prop.get("type") or "any")


def param_rows(schema: dict[str, Any]) -> list[dict[str, str]]:
    """One row per param of a params JSON schema: name, type, default, description."""
    rows = []
    for name, prop in schema.get("properties", {}).items():
        default = prop.get("default")
        required = name in schema.get("required", [])
        shown = "(required)" if required else ("-" if default is None else json.dumps(default))
        rows.append({"name": name, "type": _type(prop), "default": shown, "description": prop.get("description", "")})
    return rows


def print_source(source: dict[str, Any], *, as_json: bool = False) -> None:
    """Show one source (as ``GET /v1/sources`` describes it): params, schedule, next runs, last state."""
    schedule = source.get("schedule") or {}
    runs = next_runs(schedule["cron"], schedule.get("time_zone", "UTC")) if schedule.get("cron") else []
    params = param_rows(source.get("params_schema") or {})
    if as_json:
        out.print_json(json.dumps({**source, "params": params, "next_runs": [r.isoformat() for r in runs]}))
        return
    console.print(f"[bold]{source['name']}[/bold]: {source.get('description', '')}", highlight=False)
    table = Table("param", "type", "default", "description", title="params (-p KEY=VALUE, a list as a,b)")
    for row in params:
        table.add_row(row["name"], row["type"], row["default"], row["description"])
    out.print(table)
    cron = f"{schedule.get('cron')} ({schedule.get('time_zone', 'UTC')})" if schedule.get("cron") else "none"
    out.print(f"schedule: {cron}; next runs: {', '.join(r.isoformat() for r in runs) or '-'}", highlight=False)
    out.print(
        f"last status: {source.get('last_status') or '-'}, last success: {source.get('last_success_at') or '-'}, "
        f"watermark: {source.get('watermark') or '-'}",
        highlight=False,
    )
