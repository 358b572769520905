"""World Bank requests: the URL, the classify hook (a passing HTML 400), the probe and page-number paging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from common.core.errors import IngestError, PermanentError, TransientError
from common.sources.base import Context, PageNumberPaginator, Part, Raw, response_error
from common.sources.worldbank.params import WorldBankParams
from common.sources.worldbank.parse import decode_page, split_page

if TYPE_CHECKING:  # pragma: no cover
    import httpx


def indicator_url(base: str, indicator: str, countries: tuple[str, ...]) -> str:
    return f"{base}/country/{';'.join(countries)}/indicator/{indicator}"


def classify_response(response: httpx.Response) -> IngestError | None:
    """A 400 whose body is an HTML page, not JSON, is a known passing fault: transient, so it is retried
    in the task. Every other answer is classified by its status."""
    if response.status_code == 400 and response.content.lstrip().startswith(b"<"):
        return response_error(response, transient=True, note="(an HTML error page, which this API sends in passing)")
    return None


def get_page(url: str, query: dict[str, Any], ctx: Context) -> bytes:
    """GET one page (see :func:`classify_response`)."""
    return ctx.http.get(url, params=query, classify=classify_response).content


def query_params(params: WorldBankParams) -> dict[str, Any]:
    """The API query a job's params ask for (rows per page, years, database)."""
    out: dict[str, Any] = {"per_page": params.per_page, "max_pages": params.max_pages}
    if params.start_year is not None:
        out["date"] = f"{params.start_year}:{params.end_year}"
    if params.source is not None:
        out["source"] = params.source
    return out


def probe(indicator: str, batch: tuple[str, ...], params: WorldBankParams, ctx: Context) -> dict[str, Any]:
    """The metadata of a one-row page (``lastupdated``, ``total``): one cheap call per indicator."""
    query = {**query_params(params), "format": "json", "per_page": 1, "page": 1}
    query.pop("max_pages")
    label = f"{indicator} ({';'.join(batch)})"
    meta, _ = split_page(decode_page(get_page(indicator_url(ctx.base_url, indicator, batch), query, ctx), label), label)
    return meta


def fetch_pages(part: Part, ctx: Context) -> Raw:
    """Every page of the part, one ``[meta, rows]`` body per line, into ``<key>.ndjson``.

    Raises:
        PermanentError: an in-band API error, or more pages than ``max_pages``.
        TransientError: a body that is not JSON, or the series changed while paging.
    """
    p = part.params
    url = indicator_url(ctx.base_url, p["indicator"], tuple(p["countries"]))
    query: dict[str, Any] = {"format": "json", "per_page": p["per_page"]}
    query.update({k: p[k] for k in ("date", "source") if k in p})
    dest = ctx.workdir / f"{part.key}.ndjson"
    pager = PageNumberPaginator()
    total: int | None = None
    rows_seen = 0
    first_updated: str | None = None
    with dest.open("wb") as out:
        while pager.has_next:
            label = f"{part.key} page {pager.page}"
            doc = decode_page(get_page(url, {**query, **pager.params()}, ctx), label)
            meta, rows = split_page(doc, label)
            if total is None:
                # The first answer's page count is the one to trust (the paginator keeps it): past
                # the end the API answers a recalculated one.
                total, first_updated = meta["total"], meta.get("lastupdated")
                if meta["pages"] > p["max_pages"]:
                    raise PermanentError(
                        f"{part.key}: {total:,} rows in {meta['pages']} pages of {p['per_page']:,} exceeds "
                        f"max_pages={p['max_pages']}; raise per_page or lower batch_size"
                    )
            elif meta.get("lastupdated") != first_updated or meta["total"] != total:
                raise TransientError(f"{part.key}: the series was updated while paging (page {pager.page}); retry")
            out.write(orjson.dumps(doc) + b"\n")
            rows_seen += len(rows)
            pager.update_state(count=len(rows), total=meta["pages"])
    if rows_seen != total:
        raise TransientError(f"{part.key}: got {rows_seen:,} rows where the API announced {total:,}; retry")
    size = dest.stat().st_size
    return Raw(
        path=dest,
        size=size,
        name=dest.name,
        content_type="application/x-ndjson",
        meta={"lastupdated": first_updated, "total": total},
    )
