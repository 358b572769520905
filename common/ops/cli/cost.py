"""``tributary jobs cost JOB_ID``: what a job cost, by kind, as the API prices it (docs/cost.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from common.ops.cli.common import ApiUrl, api_url, call, fail, out
from common.ops.cli.jobs import jobs_app


@jobs_app.command("cost")
def jobs_cost(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cost as JSON.")] = False,
    url: ApiUrl = None,
) -> None:
    """Print what a job cost: its usage by kind, each at list price, and the total (before free tiers)."""
    job = call("GET", f"{api_url(url)}/v1/jobs/{job_id}")
    cost = job.get("cost")
    if not cost:
        fail(f"the API answered job {job_id} without a cost: it is older than the cost model; upgrade the api")
    if as_json:
        out.print_json(json.dumps(cost))
        return
    total, as_of = cost["total_usd"], cost["prices_as_of"]
    table = Table(title=f"{job_id} ({job['status']}): ${total:.7f} at list prices of {as_of}")
    for header in ("what", "quantity", "unit price (USD)", "cost (USD)"):
        table.add_column(header, justify="left" if header == "what" else "right")
    for line in cost["lines"]:
        quantity = f"{line['quantity']:,.6g} {line['unit']}"
        table.add_row(line["what"], quantity, f"{line['unit_price_usd']:.3e}", f"{line['usd']:.3e}")
    out.print(table)
    out.print("Free tiers apply per billing account and month: see docs/cost.md and the console's charts page.")
