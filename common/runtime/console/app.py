"""The console's routes: page shells (jinja2), static files, and the read-only JSON views under ``/ui/data``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from common.gcp import clients
from common.runtime.api.models import ApiError
from common.runtime.console import views
from common.settings import settings

log = logging.getLogger("tributary.console")

CONSOLE_PREFIX = "/ui"
HERE = Path(__file__).parent
STATIC = HERE / "static"
#: Static files and their types; nothing else under static/ is served.
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
#: The console's pages: (rule, template page name, title).
PAGES = (
    ("/ui", "jobs", "Jobs"),
    ("/ui/jobs/<job_id>", "job", "Job"),
    ("/ui/sources", "sources", "Sources"),
    ("/ui/batches", "batches", "Backfills and batches"),
    ("/ui/batches/<batch_id>", "batch", "Batch"),
    ("/ui/deadletters", "deadletters", "Dead letters"),
    ("/ui/charts", "charts", "Charts"),
)
#: Every page forbids what it does not need: scripts and styles from its own origin only, no frames, no forms.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Answer = tuple[bytes, int, dict[str, str]]


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the console's (``/ui`` or below)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


@cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
    )


def ui_root(path: str) -> str:
    """The console's root relative to ``path`` (``ui``, ``.``, ``..``): links stay right behind a path prefix."""
    depth = path[len(CONSOLE_PREFIX) :].count("/")
    return "ui" if depth == 0 else "/".join([".."] * (depth - 1)) or "."


def _page(name: str, title: str) -> Callable[..., Answer]:
    def render(*, path: str, **ids: str) -> Answer:
        html = _env().get_template("page.html").render(page=name, title=title, ids=ids, ui=ui_root(path))
        return html.encode(), 200, {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS}

    return render


def _static(*, name: str) -> Answer:
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or path.suffix not in TYPES or not path.is_file():
        raise NotFound()
    headers = {"Content-Type": TYPES[path.suffix], "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return path.read_bytes(), 200, headers


READS: Map = Map(
    [Rule(rule, endpoint=_page(name, title), methods=["GET"]) for rule, name, title in PAGES]
    + [Rule("/ui/static/<name>", endpoint=_static, methods=["GET"])]
    + [Rule(rule, endpoint=fn, methods=[method]) for method, rule, fn in views.ROUTES],
    strict_slashes=False,
    merge_slashes=False,
)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return orjson.dumps(body), status, {"Content-Type": "application/json", **(headers or {})}


def serve(method: str, path: str, *, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
    """Answer one console request (already authenticated by the api's guard): (body bytes, status, headers).

    Raises:
        Exception: only what the JSON API's own dispatch would not turn into an answer (a Google outage is
            answered 503 by the caller's handler chain).
    """
    if method == "HEAD":
        method = "GET"
    s = settings()
    try:
        with clients.call_deadline(min(s.api_read_deadline, s.call_deadline)):
            return _serve(method, path, query=query, headers=headers, body=body)
    except Exception as exc:
        if (cause := clients.unavailable_cause(exc)) is None:
            raise
        log.warning("%s %s: %s", method, path, cause)
        error = ApiError(503, "backend_unavailable", f"a Google Cloud service is unavailable: {cause}")
        return _json(error.body(), 503, {"Retry-After": "10"})


def _serve(method: str, path: str, *, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
    try:
        endpoint, args = READS.bind("api").match(path, method=method)
        if method != "GET":
            views.check_json_post(headers)
        if endpoint in views.HANDLERS:
            answer = endpoint(query=query, headers=headers, body=body, **args)
        elif endpoint is _static:
            answer = _static(**args)
        else:
            answer = endpoint(path=path, **args)
    except ApiError as exc:
        return _json(exc.body(), exc.status)
    except MethodNotAllowed as exc:
        message = f"{method} is not allowed on {path}"
        return _json(
            ApiError(405, "method_not_allowed", message).body(), 405, {"Allow": ", ".join(exc.valid_methods or [])}
        )
    except NotFound:
        return _json(ApiError(404, "not_found", f"no console page {path}").body(), 404)
    if isinstance(answer[0], bytes):
        return answer
    data, status, extra = answer
    return _json(data, status, extra)
