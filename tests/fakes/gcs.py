"""An in-process fake of the Cloud Storage JSON API, for testing the real ``google-cloud-storage`` client.

Google ships no Cloud Storage emulator. Where a plain round trip is enough (outputs on ``gs://`` read back by
the load stage, the local stack with ``bigquery=True``), the tests use the third-party ``gcp-storage-emulator``
(``tests/integration/gcsemu.py``). This fake stays for what no emulator shows: injected failures (a 503 the
client retries, a 400 it does not) and a record of each request (multipart or resumable, chunk sizes, the
client's background bucket fetch), which ``tests/integration/test_objects_gcs.py`` asserts on.
Point the stock client at it with ``STORAGE_EMULATOR_HOST=<GcsFake.url>`` (scheme included). It
implements only what ``common.gcp.objects.GcsStore`` and the tests use, as the client sends it:

- ``POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart``: a ``multipart/related`` body of JSON
  metadata and the media (``upload_from_*`` up to 8 MiB);
- ``POST …?uploadType=resumable`` then ``PUT …&upload_id=…`` with ``Content-Range`` (larger uploads):
  ``308`` with ``Range`` until the last byte, then ``200`` with the object;
- ``GET /storage/v1/b/{bucket}/o/{object}`` (metadata, ``fields=`` honoured at the top level; ``exists()``);
- ``GET /download/storage/v1/b/{bucket}/o/{object}?alt=media`` (and ``alt=media`` on the metadata path);
- ``GET /storage/v1/b/{bucket}`` (the client fetches it in the background for its bucket-metadata cache).

Like GCS, every upload replaces the object whole with a new generation, a ``crc32c`` or ``md5Hash``
sent by the client is checked against the bytes (400 on mismatch), responses carry ``crc32c`` and
``md5Hash`` (and downloads ``X-Goog-Hash``) so the client's own checksum validation runs, and an
unknown bucket or object answers 404 in the JSON API's error shape. Only buckets named at construction
exist. No ACLs, preconditions, listing, range reads or authentication.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google_crc32c
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass
class StoredObject:
    """One object as GCS holds it: bytes plus the metadata the JSON API reports."""

    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: int
    metadata: dict[str, str] = field(default_factory=dict)
    created: str = ""

    def resource(self, base_url: str) -> dict[str, Any]:
        """The object resource (``storage#object``) as the JSON API returns it."""
        path = f"b/{self.bucket}/o/{_quote(self.name)}"
        resource: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/{path}",
            "mediaLink": f"{base_url}/download/storage/v1/{path}?generation={self.generation}&alt=media",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": str(len(self.data)),
            "md5Hash": _md5(self.data),
            "crc32c": _crc32c(self.data),
            "etag": base64.b64encode(str(self.generation).encode()).decode(),
            "timeCreated": self.created,
            "updated": self.created,
        }
        if self.metadata:
            resource["metadata"] = dict(self.metadata)
        return resource


@dataclass
class _Resumable:
    bucket: str
    metadata: dict[str, Any]
    content_type: str
    total: int | None
    data: bytearray = field(default_factory=bytearray)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GcsFake:
    """The fake server. ``with GcsFake(buckets=["b"]) as gcs: …``; :attr:`url` goes in STORAGE_EMULATOR_HOST.

    ``requests`` records ``(method, path, uploadType)`` of every request; :meth:`fail_next_upload`
    makes the next upload request(s) answer an error status, as GCS does under load.
    """

    def __init__(self, buckets: list[str] | tuple[str, ...] = ("tributary-test",)) -> None:
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._uploads: dict[str, _Resumable] = {}
        self._faults: list[int] = []
        self._generation = itertools.count(int(time.time() * 1_000_000))
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._urls = Map(
            [
                Rule("/storage/v1/b/<bucket>", endpoint="bucket", methods=["GET"]),
                Rule("/storage/v1/b/<bucket>/o/<path:name>", endpoint="get", methods=["GET"]),
                Rule("/download/storage/v1/b/<bucket>/o/<path:name>", endpoint="media", methods=["GET"]),
                Rule("/upload/storage/v1/b/<bucket>/o", endpoint="upload", methods=["POST", "PUT"]),
            ]
        )

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> GcsFake:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="gcs-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> GcsFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # test helpers ------------------------------------------------------------------------------

    def get(self, bucket: str, name: str) -> StoredObject | None:
        with self._lock:
            return self.objects.get((bucket, name))

    def fail_next_upload(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([status] * times)

    def upload_types(self) -> list[str | None]:
        """``uploadType`` of each upload request so far, in order."""
        with self._lock:
            return [kind for method, path, kind in self.requests if path.startswith("/upload/")]

    # the API -----------------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append((request.method, request.path, request.args.get("uploadType")))
        try:
            endpoint, args = self._urls.bind_to_environ(environ).match()
            response = getattr(self, f"_{endpoint}")(request, **args)
        except _ApiError as exc:
            response = _error(exc.status, exc.message)
        except NotFound:
            response = _error(404, f"Not Found: {request.method} {request.path}")
        except HTTPException as exc:
            response = _error(exc.code or 400, exc.description or "bad request")
        return response(environ, start_response)

    def _bucket(self, request: Request, bucket: str) -> Response:
        self._require_bucket(bucket)
        base = request.host_url.rstrip("/")
        return _json(
            {
                "kind": "storage#bucket",
                "id": bucket,
                "selfLink": f"{base}/storage/v1/b/{bucket}",
                "name": bucket,
                "projectNumber": "123456789012",
                "location": "US-CENTRAL1",
                "locationType": "region",
                "storageClass": "STANDARD",
                "metageneration": "1",
            }
        )

    def _get(self, request: Request, bucket: str, name: str) -> Response:
        if request.args.get("alt") == "media":
            return self._media(request, bucket, name)
        resource = self._object(bucket, name).resource(request.host_url.rstrip("/"))
        if fields := request.args.get("fields"):
            wanted = {f.strip() for f in fields.split(",")}
            resource = {k: v for k, v in resource.items() if k in wanted}
        return _json(resource)

    def _media(self, request: Request, bucket: str, name: str) -> Response:
        obj = self._object(bucket, name)
        return Response(
            obj.data,
            content_type=obj.content_type,
            headers={
                "X-Goog-Hash": f"crc32c={_crc32c(obj.data)},md5={_md5(obj.data)}",
                "X-Goog-Generation": str(obj.generation),
                "X-Goog-Metageneration": "1",
                "X-Goog-Stored-Content-Length": str(len(obj.data)),
                "X-Goog-Stored-Content-Encoding": "identity",
            },
        )

    def _upload(self, request: Request, bucket: str) -> Response:
        self._require_bucket(bucket)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            return _error(fault, f"injected failure {fault}")
        kind = request.args.get("uploadType")
        if request.method == "POST" and kind == "multipart":
            return self._multipart(request, bucket)
        if request.method == "POST" and kind == "resumable":
            return self._start_resumable(request, bucket)
        if request.method == "PUT" and kind == "resumable":
            return self._resumable_chunk(request, bucket)
        raise _ApiError(400, f"unsupported upload: {request.method} uploadType={kind}")

    def _multipart(self, request: Request, bucket: str) -> Response:
        boundary = request.mimetype_params.get("boundary")
        if request.mimetype != "multipart/related" or not boundary:
            raise _ApiError(400, "multipart upload needs Content-Type multipart/related with a boundary")
        parts = _split_multipart(request.get_data(), boundary.encode())
        if len(parts) != 2:
            raise _ApiError(400, f"multipart upload needs 2 parts, got {len(parts)}")
        (_, meta_body), (media_headers, media) = parts
        metadata = json.loads(meta_body)
        content_type = metadata.get("contentType") or media_headers.get("content-type") or "application/octet-stream"
        _check_hashes(media, metadata.get("crc32c"), metadata.get("md5Hash"))
        return self._store(request, bucket, metadata, content_type, media)

    def _start_resumable(self, request: Request, bucket: str) -> Response:
        metadata = json.loads(request.get_data() or b"{}")
        if not metadata.get("name"):
            raise _ApiError(400, "Required: object name")
        total = request.headers.get("X-Upload-Content-Length")
        content_type = (
            metadata.get("contentType") or request.headers.get("X-Upload-Content-Type") or "application/octet-stream"
        )
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._uploads[upload_id] = _Resumable(bucket, metadata, content_type, int(total) if total else None)
        location = (
            f"{request.host_url.rstrip('/')}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
        )
        return Response(b"", status=200, headers={"Location": location})

    def _resumable_chunk(self, request: Request, bucket: str) -> Response:
        with self._lock:
            upload = self._uploads.get(request.args.get("upload_id", ""))
        if upload is None or upload.bucket != bucket:
            raise _ApiError(404, "No such upload")
        match = _CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
        if match is None:
            raise _ApiError(400, "Content-Range must be 'bytes first-last/total', 'bytes */total' or '…/*'")
        first, last, total = match.groups()
        chunk = request.get_data()
        if first is not None:
            if int(first) != len(upload.data) or int(last) - int(first) + 1 != len(chunk):
                raise _ApiError(400, f"chunk {first}-{last} does not continue at byte {len(upload.data)}")
            upload.data.extend(chunk)
        if total != "*":
            upload.total = int(total)
        if upload.total is None or len(upload.data) < upload.total:
            headers = {"Range": f"bytes=0-{len(upload.data) - 1}"} if upload.data else {}
            return Response(b"", status=308, headers=headers)
        data = bytes(upload.data)
        _check_hashes(data, *_goog_hash(request.headers.get("X-Goog-Hash", "")))
        _check_hashes(data, upload.metadata.get("crc32c"), upload.metadata.get("md5Hash"))
        with self._lock:
            self._uploads.pop(request.args["upload_id"], None)
        return self._store(request, bucket, upload.metadata, upload.content_type, data)

    # helpers -----------------------------------------------------------------------------------

    def _store(
        self, request: Request, bucket: str, metadata: dict[str, Any], content_type: str, data: bytes
    ) -> Response:
        name = metadata.get("name")
        if not name:
            raise _ApiError(400, "Required: object name")
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            obj = StoredObject(
                bucket, name, data, content_type, next(self._generation), dict(metadata.get("metadata") or {}), now
            )
            self.objects[(bucket, name)] = obj
        return _json(obj.resource(request.host_url.rstrip("/")))

    def _require_bucket(self, bucket: str) -> None:
        if bucket not in self.buckets:
            raise _ApiError(404, "The specified bucket does not exist.")

    def _object(self, bucket: str, name: str) -> StoredObject:
        self._require_bucket(bucket)
        with self._lock:
            obj = self.objects.get((bucket, name))
        if obj is None:
            raise _ApiError(404, f"No such object: {bucket}/{name}")
        return obj


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


_REASONS = {400: "invalid", 404: "notFound", 429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}


def _error(status: int, message: str) -> Response:
    """The JSON API's error shape, which the client turns into ``google.api_core.exceptions``."""
    reason = _REASONS.get(status, "error")
    body = {"error": {"code": status, "message": message, "errors": [{"message": message, "reason": reason}]}}
    return _json(body, status)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json; charset=UTF-8")


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="~")


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _goog_hash(header: str) -> tuple[str | None, str | None]:
    """``(crc32c, md5)`` from an ``X-Goog-Hash`` header (``crc32c=…,md5=…``; either may be absent)."""
    values = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    return values.get("crc32c"), values.get("md5")


def _check_hashes(data: bytes, crc32c: str | None, md5: str | None) -> None:
    if crc32c is not None and crc32c != _crc32c(data):
        raise _ApiError(400, f"Provided CRC32C {crc32c!r} doesn't match calculated CRC32C {_crc32c(data)!r}.")
    if md5 is not None and md5 != _md5(data):
        raise _ApiError(400, f"Provided MD5 hash {md5!r} doesn't match calculated MD5 hash {_md5(data)!r}.")


def _split_multipart(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a ``multipart/related`` body, each as (lower-cased headers, content)."""
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise _ApiError(400, "malformed multipart body")
    parts = []
    for chunk in chunks[1:-1]:
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise _ApiError(400, "multipart part without a blank line after its headers")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, content.removesuffix(b"\r\n")))
    return parts
