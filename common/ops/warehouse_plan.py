"""The load stage's part of the deploy plan: its function, account, push subscription and BigQuery dataset."""

from __future__ import annotations

from dataclasses import dataclass

from common.gcp import names
from common.ops.plan_model import FunctionPlan, FunctionSize
from common.settings import Settings

#: A load waits for its BigQuery jobs (a load job, then a MERGE); the push's ack deadline bounds a delivery.
LOAD_SIZE = FunctionSize(memory="512Mi", timeout=540, max_instances=10)


@dataclass(frozen=True)
class LoadPlan:
    consts: dict[str, str]
    function: FunctionPlan


def load_plan(*, project: str, load_url: str, env: dict[str, str], s: Settings) -> LoadPlan:
    """The load function (BigQuery as its warehouse, the push URL as its token audience) and the constants
    ``deploy.sh`` needs for its account, dataset, roles and ``load-push`` subscription."""
    consts = {
        "sa_load": names.service_account(f"{names.PREFIX}load", project),
        "load_function": names.function_name("load"),
        "load_url": load_url,
        "load_subscription": names.LOAD_SUBSCRIPTION,
        "load_push_endpoint": names.push_endpoint(load_url, s.model_copy(update={"project": project})),
        "load_push_audience": load_url,
        "dataset": s.bigquery_dataset,
        "dataset_location": s.bigquery_location,
    }
    load_env = {
        **env,
        "TRIBUTARY_OIDC_AUDIENCE": load_url,
        "TRIBUTARY_WAREHOUSE": "bigquery",
        "TRIBUTARY_BIGQUERY_DATASET": s.bigquery_dataset,
        "TRIBUTARY_BIGQUERY_LOCATION": s.bigquery_location,
    }
    function = FunctionPlan(
        kind="load",
        name=names.function_name("load"),
        entry_point="load",
        memory=LOAD_SIZE.memory,
        timeout=f"{LOAD_SIZE.timeout}s",
        max_instances=LOAD_SIZE.max_instances,
        env=load_env,
    )
    return LoadPlan(consts, function)
