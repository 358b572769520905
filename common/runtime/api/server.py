"""The api's limits on request headers, and gunicorn's own refusals in JSON.

functions-framework serves the function with gunicorn, whose own refusal of a header over 8,190 bytes (or of
more than 100 headers, or of a malformed request line) is an HTML page, sent before the function runs.
:func:`let_headers_through`, called when the api's module is loaded (before functions-framework builds the
server's configuration), raises those two gunicorn limits to :data:`SERVER_FIELD_BYTES` and
:data:`SERVER_FIELDS`, so that :func:`headers_refusal` answers a JSON 431 past :data:`MAX_HEADER_BYTES` or
:data:`MAX_HEADERS`; and it makes what gunicorn still refuses itself (beyond those, or unparseable) a JSON
error body too. In front of a deployed function, Google's own front end applies its limits first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from common.runtime.api.models import ApiError, Response

#: The most bytes of request headers (names and values) the api reads; a Google ID token is about 1 KB.
MAX_HEADER_BYTES = 32 * 1024
#: The most request headers the api reads.
MAX_HEADERS = 100
#: gunicorn's limits, raised above the api's so that the api answers first (gunicorn buffers at most
#: fields x bytes of headers: 26 MB here; its defaults are 100 x 8,190).
SERVER_FIELD_BYTES = 2 * MAX_HEADER_BYTES
SERVER_FIELDS = 4 * MAX_HEADERS


def let_headers_through() -> None:
    """Lift gunicorn's header limits (its refusals are HTML) so that :func:`headers_refusal` answers instead.

    gunicorn reads each setting's class default when it builds its configuration, which functions-framework
    does after loading the function's module; without gunicorn (the test client) this does nothing.
    """
    try:
        from gunicorn import config, util
    except ImportError:  # pragma: no cover - functions-framework always brings it
        return
    config.LimitRequestFieldSize.default = SERVER_FIELD_BYTES
    config.LimitRequestFields.default = SERVER_FIELDS
    util.write_error = write_json_error  # what its workers call to answer a request they could not parse


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` (an HTML page), answering ``{"error": {"code", "message"}}`` instead."""
    from gunicorn import util

    code = {431: "headers_too_large", 414: "request_line_too_long"}.get(status_int, "bad_request")
    body = orjson.dumps(ApiError(status_int, code, f"{reason}: {mesg}").body())
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def headers_refusal(headers: Mapping[str, str]) -> Response | None:
    """A JSON 431 when the request's headers are too many or too large, else None."""
    size = sum(len(k) + len(v) for k, v in headers.items())
    if len(headers) > MAX_HEADERS or size > MAX_HEADER_BYTES:
        message = (
            f"request headers are {len(headers)} fields, {size:,} bytes; "
            f"the limits are {MAX_HEADERS} fields and {MAX_HEADER_BYTES:,} bytes"
        )
        return ApiError(431, "headers_too_large", message).body(), 431, {}
    return None


#: What a browser says of a request made by a page of the api's own origin, or typed by its user.
SAME_ORIGIN = frozenset({"same-origin", "none"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site_refusal(method: str, headers: Mapping[str, str]) -> Response | None:
    """A 403 for a state-changing request that a browser says another site made (``Sec-Fetch-Site``), else None.

    The API takes JSON and credentials in headers, which a page of another site cannot send without a CORS
    preflight the api never grants; this also holds where a proxy in front adds the credentials (an
    identity-aware proxy's cookie), whatever the content type. Clients other than browsers send no such header.
    """
    site = headers.get("sec-fetch-site")
    if method.upper() in READ_METHODS or site is None or site in SAME_ORIGIN:
        return None
    message = f"a {method} from another site ({site}) is refused: call the API from its own origin or a client"
    return ApiError(403, "cross_site_request", message).body(), 403, {}
