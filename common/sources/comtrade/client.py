"""UN Comtrade's requests: the key header, the classify hook, and answers at the record cap split and asked again."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from common.core.errors import IngestError, PermanentError, TransientError
from common.sources.base import Context, Part, Raw, default_classify
from common.sources.comtrade.errors import describe, gateway_error
from common.sources.comtrade.params import KEY_HEADER, MAX_CALLS_PER_PART
from common.sources.comtrade.parse import check_answer
from common.sources.comtrade.query import split_query

if TYPE_CHECKING:  # pragma: no cover
    import httpx


def classify_response(response: httpx.Response, key: str) -> IngestError | None:
    """The response hook: a permanent-looking answer of the API gateway as :func:`gateway_error` says
    (a used-up quota is transient); 429/5xx and 2xx as their status says. The key is redacted."""
    error = default_classify(response, (key,))
    if error is None or isinstance(error, TransientError):
        return error
    return gateway_error(error.status, error.excerpt, url=error.url, key=key, retry_after=error.retry_after)


def fetch_answers(part: Part, ctx: Context, key: str) -> Raw:
    """Every answer of the part as one NDJSON line; an answer at the record cap is split and asked again.

    Raises:
        PermanentError: the key is refused, the API answered an error, or a query that cannot be split
            further still reaches the record cap.
        TransientError: 429/5xx/timeouts, or the daily quota is used up (retry after it refills).
    """
    url = f"{ctx.base_url}{part.params['path']}"
    cap = int(part.params["cap"])
    dest = ctx.workdir / f"{part.key}.ndjson"
    pending = [dict(part.params["query"])]
    calls = 0
    with dest.open("wb") as out:
        while pending:
            query = pending.pop(0)
            calls += 1
            if calls > MAX_CALLS_PER_PART:
                raise PermanentError(
                    f"{part.key}: still over the {cap:,}-record cap after {MAX_CALLS_PER_PART} calls; "
                    "ask for fewer reporters, partners or commodities per job"
                )
            body = _get(ctx, url, query, key)
            doc = check_answer(body, label=f"{part.key} ({describe(query)})")
            data = doc["data"]
            count = doc.get("count")
            if len(data) >= cap or (isinstance(count, int) and count > len(data)):
                halves = split_query(query)
                if not halves:
                    raise PermanentError(
                        f"{part.key}: the query {describe(query)} returned {len(data):,} records, the "
                        f"per-call cap of {cap:,}, so the answer may be truncated, and it cannot be split "
                        "further: ask for fewer partners or commodities (e.g. AG4 instead of AG6)"
                    )
                pending[:0] = halves
                continue
            # JSON whitespace outside strings is insignificant and newlines inside strings are escaped,
            # so this keeps each raw answer intact on one line.
            out.write(body.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n")
    return Raw(
        path=dest,
        size=dest.stat().st_size,
        name=f"{part.key}.ndjson",
        content_type="application/x-ndjson",
        meta={"calls": calls},
    )


def _get(ctx: Context, url: str, query: dict[str, str], key: str) -> bytes:
    classify = partial(classify_response, key=key)
    return ctx.http.get(url, params=query, headers={KEY_HEADER: key}, classify=classify, secrets=(key,)).content
