"""``tributary query "SQL"``: a query on the configured warehouse (DuckDB locally, BigQuery in the cloud)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from common.core.errors import IngestError
from common.core.warehouse import Warehouse
from common.ops.cli.common import console, out
from common.runtime.embedded import DuckDBWarehouse
from common.runtime.load import DEFAULT_DUCKDB, warehouse
from common.settings import settings

#: Where the local stacks keep their DuckDB warehouse (``tributary dev up``, ``make demo``), besides the default.
LOCAL_WAREHOUSES = (
    Path(".tributary/dev/warehouse.duckdb"),
    Path(".tributary/demo/warehouse.duckdb"),
    Path(DEFAULT_DUCKDB),
)
#: Rows printed at most (the rest are counted).
MAX_ROWS = 1000


def choose_warehouse(path: Path | None) -> Warehouse:
    """``--warehouse PATH``; else the configured one (``TRIBUTARY_WAREHOUSE``, ``TRIBUTARY_WAREHOUSE_PATH``);
    else the newest DuckDB file a local stack or ``make demo`` wrote."""
    s = settings()
    if path is not None:
        return DuckDBWarehouse(path)
    if s.warehouse == "bigquery" or s.warehouse_path:
        return warehouse(s)
    found = [p for p in LOCAL_WAREHOUSES if p.is_file()]
    if not found:
        return warehouse(s)
    newest = max(found, key=lambda p: p.stat().st_mtime)
    console.print(f"[dim]warehouse: {newest}[/dim]")
    return DuckDBWarehouse(newest)


def _cell(value: Any) -> str:
    return "[dim]NULL[/dim]" if value is None else str(value)


def query_cmd(
    sql: Annotated[str, typer.Argument(help="The SQL to run, e.g. 'select count(*) from gdelt_events'.")],
    path: Annotated[
        Path | None, typer.Option("--warehouse", help="A DuckDB warehouse file (default: the configured one).")
    ] = None,
) -> None:
    """Run a query on the warehouse and print the result as a table."""
    try:
        names, rows = choose_warehouse(path).query(sql)
    except IngestError as exc:  # one line, never a traceback
        message = exc.message.splitlines()[0] if exc.message else type(exc).__name__
        console.print(f"[red]error:[/red] {message}", soft_wrap=True)
        raise typer.Exit(1) from None
    if not names:
        out.print("done")
        return
    table = Table(*names)
    for row in rows[:MAX_ROWS]:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)
    if len(rows) > MAX_ROWS:
        console.print(f"{len(rows) - MAX_ROWS:,} more rows not shown")
