"""FRED's requests: the key in the query, errors classified in the retry loop, offset paging, vintage windows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from common.core.errors import (
    IngestError,
    PermanentError,
    TransientError,
)
from common.sources.base import (
    Context,
    OffsetPaginator,
    Part,
    Raw,
    default_classify,
)
from common.sources.fred.parse import decode_answer, http_error

if TYPE_CHECKING:  # pragma: no cover
    import httpx

OBSERVATIONS_PATH = "/fred/series/observations"
VINTAGEDATES_PATH = "/fred/series/vintagedates"

#: Per-request maxima of the two endpoints (``limit``).
OBSERVATIONS_LIMIT = 100_000
VINTAGEDATES_LIMIT = 10_000
#: FRED refuses an observations request whose real-time window holds more vintage dates than this
#: ("This exceeds the maximum number of vintage dates allowed (2000)"), so windows are cut below it.
MAX_VINTAGES_PER_REQUEST = 2000


def vintage_windows(
    start: str, end: str, vintages: list[str], *, exclusive: bool, cap: int | None = None
) -> Iterator[tuple[str, str]]:
    """Real-time windows covering ``[start, end]`` that each hold at most ``cap`` vintage dates.

    Consecutive windows share a boundary vintage ``b``: FRED clips every vintage to the window asked
    for, so the rows of a later window that still show ``realtime_start == b`` are values already
    valid at ``b`` (fetched by the window before) and the parser drops them. ``exclusive``: the first
    window's start is a cursor already stored, so nothing new needs fetching without a later vintage.
    """
    cap = cap or MAX_VINTAGES_PER_REQUEST
    new = sorted(v for v in set(vintages) if start < v <= end)
    if not new:
        if not exclusive:
            yield start, end
        return
    step = cap - 1  # the window's first day may itself be a vintage date, and FRED counts it
    lo = start
    for i in range(0, len(new), step):
        chunk = new[i : i + step]
        last = i + step >= len(new)
        yield lo, end if last else chunk[-1]
        lo = chunk[-1]


class _Client:
    """FRED GET with the key in the query, FRED's error bodies mapped in the retry loop, and ``offset`` paging."""

    def __init__(self, ctx: Context, key: str, series_id: str) -> None:
        self.ctx, self.key, self.series_id = ctx, key, series_id
        self.requests = 0

    def pages(self, path: str, query: dict[str, Any], field: str, limit: int) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every page of one request as (decoded, one NDJSON line)."""
        pager = OffsetPaginator(limit, omit_first_offset=True)
        while pager.has_next:
            q = {"series_id": self.series_id, **query, "file_type": "json", **pager.params()}
            q = {k: v for k, v in q.items() if v is not None}  # httpx would send None as "name="
            body = self._get(path, q)
            page = decode_answer(body, label=f"FRED {path} for series {self.series_id}", series_id=self.series_id)
            items = page.get(field)
            count = page.get("count")
            if not isinstance(items, list) or not isinstance(count, int):
                raise PermanentError(
                    f"FRED {path} for series {self.series_id}: no {field!r} list and count in the answer"
                )
            if pager.total is not None and count != pager.total:
                raise TransientError(f"FRED series {self.series_id} changed while paging ({pager.total} then {count})")
            pager.update_state(count=len(items), total=count)
            # JSON whitespace outside strings is insignificant and newlines inside strings are escaped.
            yield page, body.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n"

    def _get(self, path: str, query: dict[str, Any]) -> bytes:
        self.requests += 1
        url, params = f"{self.ctx.base_url}{path}", {**query, "api_key": self.key}
        return self.ctx.http.get(url, params=params, classify=self.classify, secrets=(self.key,)).content

    def classify(self, response: httpx.Response) -> IngestError | None:
        """A failed answer as FRED's own error (in the retry loop, so 429/5xx are retried in the task)."""
        error = default_classify(response, (self.key,))
        return None if error is None else http_error(error, self.series_id, self.key)


def fetch_answers(part: Part, ctx: Context, key: str) -> Raw:
    """The part's FRED answers, one per NDJSON line: vintage dates first, then observation pages.

    Raises:
        PermanentError: FRED refused the key, the series does not exist, or another 4xx / error body.
        TransientError: 429, 5xx, timeouts, or an answer that changed while paging.
    """
    p = part.params
    sid = p["series_id"]
    client = _Client(ctx, key, sid)
    dest = ctx.workdir / f"{part.key}.ndjson"
    with dest.open("wb") as out:
        if p["realtime_start"] is None:
            windows: list[tuple[str | None, str | None]] = [(None, None)]
        else:
            vintages: list[str] = []
            query = {"realtime_start": p["realtime_start"], "realtime_end": p["realtime_end"]}
            for page, line in client.pages(VINTAGEDATES_PATH, query, "vintage_dates", VINTAGEDATES_LIMIT):
                vintages += page["vintage_dates"]
                out.write(line)
            windows = [
                (lo, hi)
                for lo, hi in vintage_windows(
                    p["realtime_start"], p["realtime_end"], vintages, exclusive=p["after"] is not None
                )
            ]
        for lo, hi in windows:
            query = {"realtime_start": lo, "realtime_end": hi}
            query |= {k: p[k] for k in ("observation_start", "observation_end") if p.get(k)}
            for page, line in client.pages(OBSERVATIONS_PATH, query, "observations", OBSERVATIONS_LIMIT):
                if lo is not None and page.get("realtime_start") != lo:
                    raise PermanentError(
                        f"FRED answered series {sid} for real time from {page.get('realtime_start')!r}, "
                        f"not the {lo} asked for"
                    )
                out.write(line)
    return Raw(
        path=dest,
        size=dest.stat().st_size,
        name=dest.name,
        content_type="application/x-ndjson",
        meta={"requests": client.requests},
    )
