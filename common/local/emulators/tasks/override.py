"""The queue-level ``http_target`` of Cloud Tasks: the URI, method, header and OIDC overrides of every task."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.cloud import tasks_v2

from common.local.emulators.kit.dispatch import Oidc
from common.local.emulators.kit.rpc import Code, RpcError
from common.local.emulators.kit.rpc import invalid as _invalid

HttpTargetPb = tasks_v2.HttpTarget.pb()
ALWAYS = int(tasks_v2.UriOverride.UriOverrideEnforceMode.ALWAYS)
_SCHEMES = {int(tasks_v2.UriOverride.Scheme.HTTP): "http", int(tasks_v2.UriOverride.Scheme.HTTPS): "https"}


def check_target(target: Any) -> Any:
    """A copy of a queue's ``http_target``, checked; ``oauth_token`` is refused as for tasks."""
    if target.WhichOneof("authorization_header") == "oauth_token":
        raise RpcError(Code.UNIMPLEMENTED, "the Cloud Tasks emulator supports oidc_token, not oauth_token")
    uri = target.uri_override
    if uri.port < 0 or uri.port > 65535:
        raise _invalid(f"http_target.uri_override.port must be in [0, 65535], got {uri.port}")
    if uri.path_override.path and not uri.path_override.path.startswith("/"):
        raise _invalid("http_target.uri_override.path_override.path must begin with /")
    out = HttpTargetPb()
    out.CopyFrom(target)
    return out


def _url(target: Any, url: str) -> str:
    """The task's URL with the queue's ``uri_override``: every given part with ALWAYS, otherwise (IF_NOT_EXISTS,
    the default) only the parts the task's URL lacks (port, path, query)."""
    if not target.HasField("uri_override"):
        return url
    o, parts = target.uri_override, urlsplit(url)
    always = o.uri_override_enforce_mode == ALWAYS
    scheme, host, port = parts.scheme, parts.hostname or "", parts.port
    path, query = parts.path, parts.query
    if o.scheme in _SCHEMES and always:
        scheme = _SCHEMES[o.scheme]
    if o.host and always:
        host = o.host
    if o.port and (always or port is None):
        port = o.port
    if o.HasField("path_override") and (always or path in ("", "/")):
        path = o.path_override.path
    if o.HasField("query_override") and (always or not query):
        query = o.query_override.query_params
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((scheme, netloc, path, query, ""))


def apply_target(
    target: Any | None, method: str, url: str, headers: dict[str, str], oidc: Oidc | None
) -> tuple[str, str, dict[str, str], Oidc | None]:
    """One attempt's method, URL, headers and OIDC token after the queue's ``http_target`` (if any)."""
    if target is None:
        return method, url, headers, oidc
    url = _url(target, url)
    if target.http_method:
        method = tasks_v2.HttpMethod(target.http_method).name
    headers = dict(headers)
    for override in target.header_overrides:
        for key in [k for k in headers if k.lower() == override.header.key.lower()]:
            del headers[key]
        headers[override.header.key] = override.header.value
    if target.WhichOneof("authorization_header") == "oidc_token":
        oidc = Oidc(target.oidc_token.audience or url, target.oidc_token.service_account_email)
    return method, url, headers, oidc
