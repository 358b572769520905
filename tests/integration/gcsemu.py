"""The GCS emulator (``gcp-storage-emulator``, the JSON API in memory) started in this process on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """Run the emulator with ``bucket`` until the block ends; yields its URL (for ``STORAGE_EMULATOR_HOST``)."""
    from gcp_storage_emulator.server import create_server

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        port = server._api._httpd.server_address[1]  # bound to port 0: the kernel chose it
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
