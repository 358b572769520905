"""Record mode of the recorded-response server: forward to the real upstream, answer, and keep the answer.

A request for ``/<source>/<path>?<query>`` goes to ``<upstream of source>/<path>?<query>`` with the
client's headers (less hop-by-hop ones); the answer is written to ``<root>/<source>/<file>`` and a route
to ``<root>/<source>/_routes.json`` (see ``common.local.recorded``), so that the same directory, served
without ``--record``, replays it offline. Credentials never reach the disk: query items named like a key
(:data:`SECRET_QUERY_ITEMS`) are left out of the route (a replay then matches whatever key the client
sends), and request headers are not stored at all. Passing failures (429, 5xx) are answered but not
recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from common.sources import all_sources

#: Query items that carry credentials: forwarded upstream, never written down.
SECRET_QUERY_ITEMS = frozenset({"api_key", "apikey", "key", "token", "access_token", "subscription-key"})
#: Request headers not forwarded (hop-by-hop, or describing the connection to this server).
DROPPED_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
    | {"content-length", "accept-encoding"}
)
#: Seconds one upstream call may take (connect, and between bytes).
UPSTREAM_TIMEOUT = 60.0
EXTENSIONS = {"application/json": ".json", "text/csv": ".csv", "text/plain": ".txt", "application/zip": ".zip"}


def default_upstreams(environ: Mapping[str, str]) -> dict[str, str]:
    """Each source's upstream: ``TRIBUTARY_<SOURCE>_BASE_URL`` from ``environ``, else its real API."""
    return {
        s.name: environ.get(f"TRIBUTARY_{s.name.upper()}_BASE_URL", s.default_base_url).rstrip("/")
        for s in all_sources()
    }


def parse_upstreams(items: list[str]) -> dict[str, str]:
    """``["fred=http://127.0.0.1:9000", ...]`` as a mapping.

    Raises:
        ValueError: an item is not ``source=URL`` with an http(s) URL.
    """
    out = {}
    for item in items:
        name, _, url = item.partition("=")
        if not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"--upstream wants SOURCE=URL (an http or https URL), got {item!r}")
        out[name] = url.rstrip("/")
    return out


def file_name(path: str, query: list[tuple[str, str]], content_type: str) -> str:
    """A readable, unique name for one recorded answer: the path's last segment and a digest of the query."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.strip("/").rsplit("/", 1)[-1])[:80] or "root"
    ext = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "")
    if ext and stem.lower().endswith(ext):
        ext = ""
    digest = hashlib.sha256(json.dumps([path, query]).encode()).hexdigest()[:10]
    return f"{stem}_{digest}{ext}"


def is_passing(status: int) -> bool:
    """A failure that the next try may not meet (429, 5xx): answered, but not recorded, or replay would
    repeat it forever."""
    return status == 429 or status >= 500


class Recorder:
    """Forward requests to the upstreams and write what they answer under ``root``."""

    def __init__(self, root: Path, upstreams: Mapping[str, str]) -> None:
        self.root = root
        self.upstreams = dict(upstreams)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=UPSTREAM_TIMEOUT, follow_redirects=True)

    def close(self) -> None:
        self._client.close()

    def answer(self, raw_path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Forward one GET, record the answer (unless :func:`is_passing`), and return it (502 when the
        upstream cannot be reached)."""
        split = urlsplit(raw_path)
        source, _, rest = split.path.lstrip("/").partition("/")
        upstream = self.upstreams.get(source)
        if upstream is None:
            known = ", ".join(sorted(self.upstreams))
            return 404, {"Content-Type": "text/plain"}, f"no upstream for {source!r} (known: {known})\n".encode()
        url = f"{upstream}/{rest}" + (f"?{split.query}" if split.query else "")
        forwarded = {k: v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS}
        try:
            response = self._client.get(url, headers=forwarded)
        except httpx.HTTPError as exc:
            return 502, {"Content-Type": "text/plain"}, f"upstream {upstream} failed: {type(exc).__name__}\n".encode()
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        items = parse_qsl(split.query, keep_blank_values=True)
        query = [(k, v) for k, v in items if k.lower() not in SECRET_QUERY_ITEMS]
        if not is_passing(response.status_code):
            self.save(source, f"/{rest}", query, response.status_code, content_type, response.content)
        return response.status_code, {"Content-Type": content_type}, response.content

    def save(
        self, source: str, path: str, query: list[tuple[str, str]], status: int, content_type: str, body: bytes
    ) -> None:
        """Write ``body`` and its route (replacing a route of the same path and query)."""
        folder = self.root / source
        name = file_name(path, query, content_type)
        route: dict[str, Any] = {
            "path": path,
            "query": dict(query),
            "file": name,
            "status": status,
            "headers": {"Content-Type": content_type},
        }
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(body)
            routes_file = folder / "_routes.json"
            routes = json.loads(routes_file.read_text()) if routes_file.is_file() else []
            routes = [r for r in routes if (r.get("path"), r.get("query", {})) != (path, route["query"])]
            routes.append(route)
            # Replay takes the first route whose listed items are all in the request: the most specific first.
            routes.sort(key=lambda r: -len(r.get("query", {})))
            routes_file.write_text(json.dumps(routes, indent=1) + "\n")
