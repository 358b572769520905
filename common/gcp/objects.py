"""Where raw and normalized data land: a local directory by default, GCS in the cloud, addressed by URI.

Object names are deterministic (source, stream, partition, part key), and every write replaces the
object whole (temp file + rename locally; a single upload on GCS), so a retried or duplicated task
overwrites what an earlier attempt wrote instead of adding to it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from common.core.errors import PermanentError
from common.gcp.clients import storage
from common.settings import settings


class OutputStore(Protocol):
    def put_file(self, local: Path, name: str, content_type: str = "application/octet-stream") -> str:
        """Store ``local`` as object ``name`` (replacing it) and return its URI."""
        ...

    def put_bytes(self, data: bytes, name: str, content_type: str = "application/octet-stream") -> str: ...

    def exists(self, name: str) -> bool: ...

    def uri(self, name: str) -> str: ...


def _file_uri(path: Path) -> str:
    """``path`` as a ``file://`` URI, keeping hive folders readable (``dt=2024-01-15``, not ``dt%3D2024-01-15``)."""
    return path.as_uri().replace("%3D", "=")


class LocalStore:
    """Objects as files under ``root``; ``file://`` URIs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._folders: set[str] = set()  # made already: a task writes a few objects, mostly in the same folders

    def uri(self, name: str) -> str:
        return _file_uri(self.root / name)

    def _target(self, name: str) -> Path:
        """Where object ``name`` lives. Names are normalized, not resolved on disk: a part's key comes from
        upstream, so ``..`` is refused, and the folders under the root are ours (no link to follow)."""
        rel = posixpath.normpath(name)
        if rel in (".", "..") or rel.startswith(("/", "../")):
            raise ValueError(f"object name {name!r} escapes the output root")
        return self.root / rel

    def _replace(self, name: str, write: Callable[[Path], object]) -> str:
        """Write through a temporary file, then rename: readers see the old object or the new, never half.

        The temporary name is unique per process and thread: duplicate deliveries of one task run
        concurrently in one process and write the same objects.
        """
        target = self._target(name)
        folder = str(target.parent)
        if folder not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            write(tmp)
        except FileNotFoundError:  # the folder was removed since (e.g. a cleaned output root): made again
            target.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
        os.replace(tmp, target)
        return _file_uri(target)

    def put_file(self, local: Path, name: str, content_type: str = "application/octet-stream") -> str:
        return self._replace(name, lambda tmp: shutil.copyfile(local, tmp))

    def put_bytes(self, data: bytes, name: str, content_type: str = "application/octet-stream") -> str:
        return self._replace(name, lambda tmp: tmp.write_bytes(data))

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()


#: Resumable uploads send files over 8 MiB in chunks of this size. The client's default chunk is 100 MiB,
#: each read whole into memory: a function's peak memory would grow with the largest output
#: (docs/google-quirks.md). A multiple of 256 KiB, as the API requires.
UPLOAD_CHUNK = 8 * 1024 * 1024


class GcsStore:
    """Objects in a GCS bucket under a prefix; ``gs://`` URIs. Uploads replace objects atomically."""

    def __init__(self, uri: str) -> None:
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        self.bucket_name, self.prefix = bucket, prefix.strip("/")

    def _blob(self, name: str) -> Any:
        key = f"{self.prefix}/{name}" if self.prefix else name
        return storage().bucket(self.bucket_name).blob(key, chunk_size=UPLOAD_CHUNK)

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{self.prefix + '/' if self.prefix else ''}{name}"

    def put_file(self, local: Path, name: str, content_type: str = "application/octet-stream") -> str:
        self._blob(name).upload_from_filename(str(local), content_type=content_type)
        return self.uri(name)

    def put_bytes(self, data: bytes, name: str, content_type: str = "application/octet-stream") -> str:
        self._blob(name).upload_from_string(data, content_type=content_type)
        return self.uri(name)

    def exists(self, name: str) -> bool:
        return bool(self._blob(name).exists())


def output_store(uri: str | None = None) -> OutputStore:
    """The store for ``uri`` (default: ``TRIBUTARY_OUTPUT_URI``): ``gs://…``, ``file://…`` or a path.
    One per URI and process: a store holds no connection of its own, only what it learnt (folders made)."""
    uri = uri or settings().output_uri
    if uri.startswith("gs://"):
        return _store_for(uri)
    return _store_for(os.path.join(os.getcwd(), uri.removeprefix("file://")))  # a relative path: of this folder


@functools.lru_cache(maxsize=16)
def _store_for(where: str) -> OutputStore:
    return GcsStore(where) if where.startswith("gs://") else LocalStore(where)


# ---- reading outputs back (the load stage) ---------------------------------------------------------------


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local file holding the object at ``uri``: the file itself for ``file://`` and paths, a temporary
    download (removed afterwards) for ``gs://``.

    Raises:
        PermanentError: the object does not exist.
    """
    if not uri.startswith("gs://"):
        path = Path(unquote(uri.removeprefix("file://")) if uri.startswith("file:") else uri)
        if not path.is_file():
            raise PermanentError(f"output {uri} does not exist")
        yield path
        return
    from google.api_core.exceptions import NotFound

    bucket, _, key = uri.removeprefix("gs://").partition("/")
    with tempfile.TemporaryDirectory(prefix="trib-load-") as tmp:
        target = Path(tmp) / key.rsplit("/", 1)[-1]
        try:
            storage().bucket(bucket).blob(key, chunk_size=UPLOAD_CHUNK).download_to_filename(str(target))
        except NotFound as exc:
            raise PermanentError(f"output {uri} does not exist") from exc
        yield target
