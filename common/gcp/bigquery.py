"""The BigQuery warehouse: tables from the declared schema, idempotent loads through a staging table + MERGE.

Each output is loaded into a staging table by a load job whose id comes from the job and the output, then
moved into its table by one ``MERGE`` (a query job with the derived id plus ``_apply``):

- merge rules: rows whose keys match are updated, the others inserted;
- replace rules: ``ON FALSE`` with ``WHEN NOT MATCHED BY SOURCE AND <same output> THEN DELETE`` (or every
  row, for a snapshot), so the output's old rows go and its new rows come in one atomic statement.

A redelivered event meets BigQuery's 409 on both job ids and reuses the finished jobs. Correctness does not
hang on that answer alone (the BigQuery emulator accepts a duplicate job id, docs/google-quirks.md): the
``MERGE`` gives the same table when run twice, and no partition decorator is used at all.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from common.core.errors import PermanentError, TransientError
from common.core.schema import Column
from common.core.warehouse import (
    DT_COLUMN,
    LINEAGE,
    LOADED_COLUMN,
    OUTPUT_COLUMN,
    LoadResult,
    LoadRule,
    Output,
    check_columns,
    table_name,
)
from common.gcp.objects import local_copy

#: Seconds a load or a MERGE may take before the delivery gives up (Pub/Sub redelivers; the job ids are reused).
JOB_TIMEOUT = 300.0
#: BigQuery's legacy type names in table metadata, as declared types.
LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def _quote(name: str) -> str:
    return f"`{name}`"


class BigQueryWarehouse:
    """Tables in one BigQuery dataset: ``<project>.<dataset>.<source>_<stream>``."""

    name = "bigquery"

    def __init__(self, *, project: str, dataset: str, location: str = "US", endpoint: str | None = None) -> None:
        self.project, self.dataset, self.location, self.endpoint = project, dataset, location, endpoint
        self._client: Any = None
        self._guard = threading.Lock()

    def client(self) -> Any:
        """The BigQuery client (imported on first use); anonymous against an emulator ``endpoint``."""
        with self._guard:
            if self._client is None:
                from google.cloud import bigquery

                if self.endpoint:
                    from google.auth.credentials import AnonymousCredentials

                    endpoint = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
                    self._client = bigquery.Client(
                        project=self.project,
                        credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": endpoint},
                        location=self.location,
                    )
                else:
                    self._client = bigquery.Client(project=self.project, location=self.location)
            return self._client

    def _ref(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def ensure_dataset(self) -> None:
        """Create the dataset when it is missing (``deploy.sh`` creates it in the cloud)."""
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        dataset.location = self.location
        self.client().create_dataset(dataset, exists_ok=True)

    def ensure_table(self, table: str, columns: Sequence[Column], rule: LoadRule) -> None:
        """Create the table (partitioned by the rule's date column, clustered) or add the columns it lacks.

        Raises:
            SchemaChangeError: a column was renamed, removed or retyped (the message names it).
        """
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        client = self.client()
        try:
            current = client.get_table(self._ref(table))
        except NotFound:
            self.ensure_dataset()
            new = bigquery.Table(self._ref(table), schema=_schema([*columns, *LINEAGE]))
            new.time_partitioning = bigquery.TimePartitioning(type_=rule.partition_type, field=rule.partition)
            new.clustering_fields = list(rule.clustering) or None
            client.create_table(new, exists_ok=True)
            return
        existing = {f.name: LEGACY_TYPES.get(f.field_type, f.field_type) for f in current.schema}
        missing = check_columns(table, existing, columns)
        if missing:
            # Field addition, by DDL (new columns are NULLABLE for the rows already there). Patching the table's
            # schema does the same on BigQuery, but the emulator then changes only its metadata
            # (docs/google-quirks.md); the DDL works on both.
            adds = ", ".join(f"add column if not exists {_quote(c.name)} {c.type}" for c in missing)
            self._run(lambda: client.query(f"alter table {_quote(self._ref(table))} {adds}", job_retry=None), "alter")

    def _run(self, start: Any, job_id: str) -> tuple[Any, bool]:
        """Start a job with ``job_id``, or reuse the job of that id (409: a redelivered event); wait for it."""
        from google.api_core.exceptions import Conflict, GoogleAPICallError

        reused = False
        try:
            job = start()
        except Conflict:
            job, reused = self.client().get_job(job_id, location=self.location), True
        try:
            job.result(timeout=JOB_TIMEOUT)
        except GoogleAPICallError as exc:
            if getattr(exc, "code", 500) in (400, 403, 404):
                raise PermanentError(f"BigQuery job {job_id} failed: {exc.message}") from exc
            raise TransientError(f"BigQuery job {job_id} failed: {exc.message}") from exc
        return job, reused

    def load(self, output: Output, columns: Sequence[Column], rule: LoadRule, load_id: str) -> LoadResult:
        """Load ``output`` into a staging table, then MERGE it into its table under ``rule``.

        Raises:
            SchemaChangeError: the table cannot take the declared schema.
            PermanentError: BigQuery refused the load or the MERGE.
            TransientError: BigQuery failed in a way that may pass.
        """
        from google.cloud import bigquery

        table = table_name(output.source, output.stream)
        self.ensure_table(table, columns, rule)
        client = self.client()
        staging = self._ref(f"_staging_{load_id}")
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=_schema(columns),
        )

        sent: list[int] = []

        def start_load() -> Any:
            # An emulator cannot read gs:// from a GCS emulator (docs/google-quirks.md): it gets the bytes.
            if output.uri.startswith("gs://") and not self.endpoint:
                return client.load_table_from_uri(output.uri, staging, job_id=load_id, job_config=config)
            with local_copy(output.uri) as local, local.open("rb") as fh:
                sent.append(local.stat().st_size)
                return client.load_table_from_file(fh, staging, job_id=load_id, job_config=config, rewind=True)

        load_job, _ = self._run(start_load, load_id)
        apply_id = f"{load_id}_apply"
        sql, params = merge_sql(self._ref(table), staging, columns, rule, output)
        query_config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(name, kind, value) for name, kind, value in params]
        )
        _, reused = self._run(
            lambda: client.query(sql, job_id=apply_id, job_config=query_config, job_retry=None), apply_id
        )
        client.delete_table(staging, not_found_ok=True)
        return LoadResult(
            table=table,
            output=output.name,
            load_id=load_id,
            rows=int(getattr(load_job, "output_rows", 0) or 0),
            bytes=int(getattr(load_job, "input_file_bytes", 0) or 0) or sum(sent),
            job_id=load_id,
            reused=reused,
        )

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` (standard SQL; tables are found in the dataset without qualifying them).

        Raises:
            PermanentError: BigQuery refused the query.
        """
        from google.api_core.exceptions import GoogleAPICallError
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(default_dataset=f"{self.project}.{self.dataset}")
        try:
            rows = self.client().query(sql, job_config=config).result(timeout=JOB_TIMEOUT)
        except GoogleAPICallError as exc:
            raise PermanentError(str(exc.message).splitlines()[0]) from exc
        names = [f.name for f in rows.schema]
        return names, [tuple(row.values()) for row in rows]


def _schema(columns: Sequence[Column]) -> list[Any]:
    from google.cloud import bigquery

    return [bigquery.SchemaField.from_api_repr(c.bigquery()) for c in columns]


def merge_sql(
    target: str, staging: str, columns: Sequence[Column], rule: LoadRule, output: Output
) -> tuple[str, list[tuple[str, str, Any]]]:
    """The one ``MERGE`` that moves a staged output into its table under ``rule``, and its parameters."""
    names = [c.name for c in columns] + [OUTPUT_COLUMN, DT_COLUMN, LOADED_COLUMN]
    source = (
        f"(select *, @output as {OUTPUT_COLUMN}, cast(@dt as date) as {DT_COLUMN}, "
        f"current_timestamp() as {LOADED_COLUMN} from {_quote(staging)})"
    )
    insert = (
        f"when not matched then insert ({', '.join(map(_quote, names))}) "
        f"values ({', '.join('S.' + _quote(n) for n in names)})"
    )
    if rule.mode == "merge":
        on = " and ".join(f"T.{_quote(k)} = S.{_quote(k)}" for k in rule.keys)
        update = ", ".join(f"{_quote(n)} = S.{_quote(n)}" for n in names if n not in rule.keys)
        clauses = f"when matched then update set {update} {insert}"
    else:
        scope = "" if rule.scope == "table" else f" and T.{OUTPUT_COLUMN} = @output"
        on = "false"
        clauses = f"when not matched by source{scope} then delete {insert}"
    sql = f"merge {_quote(target)} T using {source} S on {on} {clauses}"
    dt = output.dt.isoformat() if output.dt else None
    return sql, [("output", "STRING", output.name), ("dt", "STRING", dt)]
