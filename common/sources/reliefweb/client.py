"""ReliefWeb's requests: the appname hook, the page query (window filter, stable sort) and offset paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from common.core.errors import IngestError, PermanentError, TransientError
from common.sources.base import Context, OffsetPaginator, Part, Raw, response_error
from common.sources.reliefweb.params import APPNAME_ENV
from common.sources.reliefweb.parse import FIELDS, decode_page, int_field, page_items

if TYPE_CHECKING:  # pragma: no cover
    import httpx


def refused_appname(appname: str) -> Callable[[httpx.Response], IngestError | None]:
    """The response hook: a 401/403 means the appname was refused, which says how to get one approved."""

    def classify(response: httpx.Response) -> IngestError | None:
        if response.status_code not in (401, 403):
            return None
        return response_error(
            response,
            message=f"ReliefWeb refused appname {appname!r} (HTTP {response.status_code}): since 1 November 2025 "
            f"the API needs a pre-approved appname (request one at https://apidoc.reliefweb.int/parameters"
            f"#appname), set as params.appname or ${APPNAME_ENV}",
        )

    return classify


def page_query(part: Part, offset: int) -> list[tuple[str, str | int]]:
    """The GET query of one page: the window filter, a stable sort, the fields, the page."""
    p = part.params
    q: list[tuple[str, str | int]] = [
        ("appname", p["appname"]),
        ("offset", offset),
        ("limit", p["page_size"]),
        ("filter[operator]", "AND"),
        ("filter[conditions][0][field]", "date.changed"),
        ("filter[conditions][0][value][from]", p["after"]),
        ("filter[conditions][0][value][to]", p["until"]),
    ]
    if p.get("countries"):
        q += [("filter[conditions][1][field]", "country.iso3"), ("filter[conditions][1][operator]", "OR")]
        q += [("filter[conditions][1][value][]", code) for code in p["countries"]]
    # Offset paging needs a total order: date.changed has ties, the id breaks them.
    q += [("sort[]", "date.changed:asc"), ("sort[]", "id:asc")]
    q += [("fields[include][]", f) for f in FIELDS[part.stream]]
    return q


def fetch_pages(part: Part, ctx: Context) -> Raw:
    """All pages of the part's window, one JSON body per line (NDJSON) in ``<key>.ndjson``.

    Raises:
        PermanentError: the appname was refused, an error body, or more pages than ``max_pages``.
        TransientError: a body that is not JSON, or the window changed while paging.
    """
    url = f"{ctx.base_url}/{part.stream}"
    dest = ctx.workdir / f"{part.key}.ndjson"
    page_size, max_pages = int(part.params["page_size"]), int(part.params["max_pages"])
    pager = OffsetPaginator(page_size)
    classify = refused_appname(part.params["appname"])
    with dest.open("wb") as out:
        while pager.has_next:
            if pager.pages >= max_pages:
                raise PermanentError(f"{part.key}: more than max_pages={max_pages} pages; use a smaller window")
            offset, label = pager.offset, f"{part.key} offset {pager.offset}"
            page = decode_page(ctx.http.get(url, params=page_query(part, offset), classify=classify).content, label)
            items = page_items(page, label)
            count = int_field(page.get("totalCount"), "totalCount", part.key)
            if pager.total is None:
                if -(-count // page_size) > max_pages:
                    raise PermanentError(
                        f"{part.key}: {count:,} {part.stream} changed in this window, more than "
                        f"max_pages={max_pages} x page_size={page_size}; use a smaller window_hours"
                    )
            elif count != pager.total:
                raise TransientError(f"{part.key}: totalCount moved from {pager.total} to {count} while paging")
            out.write(orjson.dumps(page) + b"\n")
            if not items and offset < count:
                raise TransientError(f"{part.key}: empty page at offset {offset} of {count}")
            pager.update_state(count=len(items), total=count)
    total = pager.total
    size = dest.stat().st_size
    return Raw(path=dest, size=size, name=dest.name, content_type="application/x-ndjson", meta={"total": total})
