"""The public HTTP API: submit and poll jobs and backfills, list sources, run the reaper.

Every bad request answers 4xx with ``{"error": {"code", "message", "field"}}`` and creates nothing.
``routes.ROUTES`` is the one table the router and the OpenAPI document are both generated from;
``handlers`` answer, ``models`` say what requests and answers hold, ``openapi`` writes the document.
"""

from common.runtime.api.models import MAX_BODY, MAX_LIMIT, ApiError, Route
from common.runtime.api.routes import ROUTER, ROUTES, document, finish, handle, refusal
from common.runtime.api.server import cross_site_refusal, headers_refusal, let_headers_through

__all__ = [
    "MAX_BODY",
    "MAX_LIMIT",
    "ROUTER",
    "ROUTES",
    "ApiError",
    "Route",
    "cross_site_refusal",
    "document",
    "finish",
    "handle",
    "headers_refusal",
    "let_headers_through",
    "refusal",
]
