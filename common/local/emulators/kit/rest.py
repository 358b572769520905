"""The REST side of the emulators: each call's HTTP rule (google.api.http), JSON in and out, over HTTP/1.1.

A request is transcoded as Google's front end does it: the path variables, the query parameters and the JSON
body (the rule's ``body`` field, or the whole request for ``*``) become the request message, parsed with
``google.protobuf.json_format``; the answer goes back through the same module, so field names, durations
(``"10s"``), timestamps (RFC 3339), int64 as strings and base64 bytes are Google's. An :class:`RpcError` is
answered ``{"error": {"code", "message", "status"}}`` with the HTTP status of google/rpc/code.proto.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from werkzeug.datastructures import MultiDict
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from common.local.emulators.kit.rpc import Code, RpcError, code_to_http

log = logging.getLogger("tributary.emulators.rest")

#: Google's system parameters: accepted on every call, never request fields.
SYSTEM_PARAMS = frozenset(
    {"alt", "$alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key", "access_token", "oauth_token"}
    | {"$.xgafv", "callback", "$callback", "quotaUser", "userIp", "upload_protocol", "uploadType"}
)
MAX_BODY = 1024 * 1024
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")
JSON_TYPE = "application/json; charset=UTF-8"


def _segment(pattern: str) -> str:
    """A path template's variable pattern (``projects/*/locations/*``) as a regular expression."""
    parts = []
    for part in pattern.split("/"):
        parts.append(".+" if part == "**" else "[^/]+" if part == "*" else re.escape(part))
    return "/".join(parts)


def compile_template(template: str) -> tuple[re.Pattern[str], list[str]]:
    """``/v2/{parent=projects/*/locations/*}/queues`` → a regex with one group per variable, and the field
    path of each group in order."""
    regex, fields, at = "", [], 0
    for m in _VARIABLE.finditer(template):
        regex += re.escape(template[at : m.start()])
        regex += f"({_segment(m.group(2) or '*')})"
        fields.append(m.group(1))
        at = m.end()
    regex += re.escape(template[at:])
    return re.compile(regex), fields


@dataclass(frozen=True)
class Route:
    """One call's HTTP rule as Google's REST reference gives it: ``verb``, URI ``template`` and ``body``
    (the request field the JSON body fills: ``"*"`` for the whole request, ``None`` for no body). ``call`` takes
    the raw ``request`` protobuf and returns the raw response protobuf."""

    verb: str
    template: str
    rpc: str
    call: Callable[[Any], Message]
    request: type[Message]
    body: str | None = None
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex, fields = compile_template(self.template)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "fields", tuple(fields))


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        child = target.setdefault(name, {})
        if not isinstance(child, dict):
            raise RpcError(Code.INVALID_ARGUMENT, f"Invalid JSON payload received. {name!r} is not an object")
        target = child
    target[leaf] = value


def _query(args: MultiDict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in args:
        if key in SYSTEM_PARAMS:
            continue
        values = args.getlist(key)
        _put(out, key, values if len(values) > 1 else values[0])
    return out


def error_body(code: Code, message: str) -> dict[str, Any]:
    """Google's JSON error: ``{"error": {"code": HTTP status, "message", "status": "NOT_FOUND"}}``."""
    return {"error": {"code": code_to_http(code), "message": message, "status": Code[code.name].name}}


class RestApp:
    """A WSGI application serving ``routes``; ``name`` appears in logs and unexpected-error messages."""

    def __init__(self, routes: Iterable[Route], *, name: str) -> None:
        self.routes = list(routes)
        self.name = name

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = self.handle(Request(environ))
        return response(environ, start_response)

    @staticmethod
    def _reply(status: int, payload: dict[str, Any]) -> Response:
        return Response(json.dumps(payload, indent=2) + "\n", status=status, content_type=JSON_TYPE)

    def _error(self, code: Code, message: str) -> Response:
        return self._reply(code_to_http(code), error_body(code, message))

    def handle(self, request: Request) -> Response:
        path = request.path
        matched = [(r, m) for r in self.routes if (m := r.regex.fullmatch(path))]
        found = next(((r, m) for r, m in matched if r.verb == request.method), None)
        if found is None:
            if matched:
                allowed = ", ".join(sorted({r.verb for r, _ in matched}))
                return self._error(Code.NOT_FOUND, f"{request.method} is not a method of {path} (only {allowed})")
            return self._error(Code.NOT_FOUND, f"The {self.name} emulator has no method at {path}")
        route, match = found
        alt = request.args.get("$alt") or request.args.get("alt") or "json"
        int_enums = "enum-encoding=int" in alt
        try:
            message = self._transcode(route, match, request)
            answer = route.call(message)
        except RpcError as exc:
            return self._error(exc.code, exc.message)
        except Exception as exc:
            log.exception("%s %s failed", request.method, path)
            return self._error(Code.INTERNAL, f"emulator error in {route.rpc}: {type(exc).__name__}: {exc}")
        log.debug("%s %s -> %s", request.method, path, route.rpc)
        return self._reply(200, json_format.MessageToDict(answer, use_integers_for_enums=int_enums))

    @staticmethod
    def _transcode(route: Route, match: re.Match[str], request: Request) -> Message:
        """The request message: query parameters, then the body, then the path variables."""
        payload = _query(request.args)
        if route.body is not None:
            raw = request.get_data(cache=False)
            if len(raw) > MAX_BODY:
                raise RpcError(Code.INVALID_ARGUMENT, f"the request body is over {MAX_BODY} bytes")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError) as exc:
                raise RpcError(Code.INVALID_ARGUMENT, f"Invalid JSON payload received. {exc}") from None
            if not isinstance(body, dict):
                raise RpcError(Code.INVALID_ARGUMENT, "Invalid JSON payload received. Expected an object.")
            if route.body == "*":
                payload.update(body)
            else:
                payload[route.body] = body
        for name, value in zip(route.fields, match.groups(), strict=True):
            _put(payload, name, value)
        try:
            return json_format.ParseDict(payload, route.request())
        except json_format.ParseError as exc:
            detail = str(exc).split("\n", 1)[0]
            raise RpcError(Code.INVALID_ARGUMENT, f"Invalid JSON payload received. {detail}") from None


class _Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Google's clients expect

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s", self.requestline, code)


class RestServer:
    """Serves ``routes`` on ``host:port`` (0 picks a free port) from a daemon thread (werkzeug, threaded)."""

    def __init__(self, host: str, port: int, routes: Iterable[Route], *, name: str) -> None:
        self.app = RestApp(routes, name=name)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True, request_handler=_Handler)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{name}-rest", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=max(0.1, timeout))
