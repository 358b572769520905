"""Structured upstream errors, the one redaction helper and the shared paginators, without a network."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from common.core.errors import (
    IngestError,
    PermanentError,
    TransientError,
    UpstreamHTTPError,
    UpstreamPermanent,
    UpstreamTransient,
)
from common.core.paging import OffsetPaginator, PageNumberPaginator
from common.sources.base import default_classify, redact, response_error, safe_url

KEY = "abcdef0123456789abcdef0123456789"
SOURCES = Path(__file__).resolve().parents[2] / "common" / "sources"


def answer(
    status: int, body: str = "", url: str = "https://api.example.org/v1/data?x=1", **headers: str
) -> httpx.Response:
    return httpx.Response(status, text=body, headers=headers, request=httpx.Request("GET", url))


# ---- the error's fields -----------------------------------------------------------------------------------
def test_a_failed_answer_is_an_error_with_fields_and_todays_message() -> None:
    error = default_classify(answer(503, "  busy, come back later  ", **{"Retry-After": "7"}))
    assert isinstance(error, UpstreamTransient) and isinstance(error, TransientError)
    assert isinstance(error, UpstreamHTTPError) and error.kind == "transient"
    assert (error.status, error.url, error.excerpt, error.retry_after) == (
        503,
        "https://api.example.org/v1/data",
        "busy, come back later",
        7.0,
    )
    assert (
        str(error)
        == error.message
        == "upstream answered 503 from https://api.example.org/v1/data: busy, come back later"
    )
    assert error.to_dict() == {"kind": "transient", "type": "UpstreamTransient", "message": error.message}


@pytest.mark.parametrize(
    ("status", "cls", "base"),
    [
        (400, UpstreamPermanent, PermanentError),
        (404, UpstreamPermanent, PermanentError),
        (408, UpstreamTransient, TransientError),
        (429, UpstreamTransient, TransientError),
        (500, UpstreamTransient, TransientError),
    ],
)
def test_the_kind_is_the_class(status: int, cls: type[IngestError], base: type[IngestError]) -> None:
    error = default_classify(answer(status))
    assert type(error) is cls and isinstance(error, base) and error.status == status
    assert error.message == f"upstream answered {status} from https://api.example.org/v1/data"


def test_2xx_and_3xx_are_no_error() -> None:
    assert default_classify(answer(200, "{}")) is None and default_classify(answer(304)) is None


def test_a_source_may_overrule_the_status_and_word_the_message() -> None:
    transient = response_error(answer(400, "<html>Request Error</html>"), transient=True, note="(passing)")
    assert isinstance(transient, UpstreamTransient) and transient.status == 400
    assert transient.message.endswith("<html>Request Error</html> (passing)")
    worded = response_error(answer(403, "Forbidden"), message="the appname was refused")
    assert isinstance(worded, UpstreamPermanent) and str(worded) == "the appname was refused"
    assert worded.excerpt == "Forbidden" and worded.url == "https://api.example.org/v1/data"
    assert isinstance(response_error(answer(200, '{"error": "x"}'), transient=False), PermanentError)


def test_the_body_excerpt_is_bounded() -> None:
    error = default_classify(answer(500, "x" * 5000))
    assert error is not None and error.excerpt == "x" * 300


# ---- redaction ------------------------------------------------------------------------------------------
def test_a_key_in_the_url_and_in_the_body_never_reaches_the_error() -> None:
    url = f"https://api.example.org/fred/{KEY}/series?api_key={KEY}&series_id=GDP"
    error = default_classify(answer(400, f'{{"error_message": "api_key={KEY} is not registered ({KEY})"}}', url), [KEY])
    assert error is not None
    assert KEY not in error.url and KEY not in error.excerpt and KEY not in str(error)
    assert error.url == "https://api.example.org/fred/***/series"  # no query string: keys travel there
    assert "api_key=*** is not registered (***)" in error.excerpt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"GET https://x/y?api_key={KEY}&limit=5", "GET https://x/y?api_key=***&limit=5"),
        (
            "https://x/y?access_token=t0ken&X-Amz-Signature=SIG&a=1",
            "https://x/y?access_token=***&X-Amz-Signature=***&a=1",
        ),
        (f"the key {KEY} was refused", "the key *** was refused"),
        ("ab is short: left alone", "ab is short: left alone"),
    ],
)
def test_redact_masks_known_secrets_and_credential_parameters(text: str, expected: str) -> None:
    assert redact(text, [KEY, "ab"]) == expected


def test_safe_url_drops_the_query_and_the_fragment() -> None:
    assert safe_url(f"https://x/a/b?key={KEY}#frag") == "https://x/a/b"


def test_no_source_module_reads_an_error_message_back() -> None:
    for module in SOURCES.glob("*.py"):
        text = module.read_text()
        assert not re.search(r"re\.\w+\([^)]*upstream answered", text), module.name
        assert "STATUS_RE" not in text, module.name


# ---- paginators -----------------------------------------------------------------------------------------
def test_offset_paginator_stops_at_the_first_announced_total() -> None:
    pager = OffsetPaginator(2)
    asked = []
    for count, total in [(2, 5), (2, 9), (1, 9)]:
        assert pager.has_next
        asked.append(pager.params())
        pager.update_state(count=count, total=total)
    assert asked == [{"offset": 0, "limit": 2}, {"offset": 2, "limit": 2}, {"offset": 4, "limit": 2}]
    assert not pager.has_next and pager.total == 5 and pager.pages == 3 and pager.offset == 5


def test_offset_paginator_stops_on_an_empty_page_and_can_omit_the_first_offset() -> None:
    pager = OffsetPaginator(100, omit_first_offset=True, limit_param=None)
    assert pager.params() == {}
    pager.update_state(count=100, total=None)
    assert pager.has_next and pager.params() == {"offset": 100}
    pager.update_state(count=0, total=None)
    assert not pager.has_next


def test_page_number_paginator_counts_pages_from_the_first_answer() -> None:
    pager = PageNumberPaginator()
    asked = []
    for count, pages in [(4, 2), (2, 3)]:
        asked.append(pager.params())
        pager.update_state(count=count, total=pages)
    assert asked == [{"page": 1}, {"page": 2}] and not pager.has_next and pager.total == 2


def test_page_number_paginator_ends_on_an_empty_answer() -> None:
    pager = PageNumberPaginator(base_page=0, page_param="p")
    assert pager.params() == {"p": 0}
    pager.update_state(count=0, total=0)
    assert not pager.has_next and pager.params() == {"p": 0}
