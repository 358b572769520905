"""GcsStore through the real google-cloud-storage client, against tests/fakes/gcs.py.

Google ships no Cloud Storage emulator, so this is the one place where a Google service is faked: the
client is the stock one, unchanged, pointed at the fake with ``STORAGE_EMULATOR_HOST`` (which it
honours itself, with anonymous credentials). What the store wrote is read back through the same client.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from common.gcp.clients import reset_clients, storage
from common.gcp.objects import UPLOAD_CHUNK, GcsStore, LocalStore, output_store
from common.settings import reset_settings, settings
from tests.fakes.gcs import GcsFake

BUCKET = "tributary-test"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsFake]:
    """The fake, with the storage client pointed at it."""
    fake = GcsFake(buckets=[BUCKET]).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
    monkeypatch.setenv("TRIBUTARY_PROJECT", "t-gcs")
    reset_settings()
    reset_clients()
    yield fake
    # The client's background bucket-metadata fetch (see test_the_client_fetches_bucket_metadata_in_the_background)
    # retries for up to 120 s if its server vanishes: let it finish first, for at most 5 s.
    for thread in threading.enumerate():
        if thread.name.endswith("(_fetch_background)"):
            thread.join(5.0)
    fake.stop()


def read_back(key: str) -> bytes:
    """The object's bytes, downloaded by the real client (which checks the served CRC32C)."""
    return bytes(storage().bucket(BUCKET).blob(key).download_as_bytes())


def metadata(key: str) -> object:
    blob = storage().bucket(BUCKET).blob(key)
    blob.reload()
    return blob


def test_the_client_uses_the_fake_anonymously_under_our_project(gcs: GcsFake) -> None:
    from google.auth.credentials import AnonymousCredentials

    client = storage()
    assert gcs.url == client._connection.API_BASE_URL
    assert isinstance(client._credentials, AnonymousCredentials)
    assert client.project == settings().project == "t-gcs"


def test_put_bytes_under_a_prefix(gcs: GcsFake) -> None:
    store = GcsStore(f"gs://{BUCKET}/raw/v1")
    data = b'{"series": "GDP", "value": 1.5}\n'

    uri = store.put_bytes(data, "fred/GDP/2024-01-01.jsonl", "application/x-ndjson")

    assert uri == f"gs://{BUCKET}/raw/v1/fred/GDP/2024-01-01.jsonl" == store.uri("fred/GDP/2024-01-01.jsonl")
    assert read_back("raw/v1/fred/GDP/2024-01-01.jsonl") == data
    blob = metadata("raw/v1/fred/GDP/2024-01-01.jsonl")
    assert blob.content_type == "application/x-ndjson"  # type: ignore[attr-defined]
    assert blob.size == len(data)  # type: ignore[attr-defined]
    assert blob.md5_hash == gcs.get(BUCKET, "raw/v1/fred/GDP/2024-01-01.jsonl").resource("")["md5Hash"]  # type: ignore[attr-defined, union-attr]
    assert gcs.upload_types() == ["multipart"]


@pytest.mark.parametrize("uri", [f"gs://{BUCKET}", f"gs://{BUCKET}/"])
def test_put_bytes_without_a_prefix(gcs: GcsFake, uri: str) -> None:
    store = GcsStore(uri)

    assert store.put_bytes(b"a,b\n1,2\n", "part-0.csv", "text/csv") == f"gs://{BUCKET}/part-0.csv"

    assert read_back("part-0.csv") == b"a,b\n1,2\n"
    assert [name for _, name in gcs.objects] == ["part-0.csv"]


def test_a_prefix_is_stripped_of_outer_slashes(gcs: GcsFake) -> None:
    store = GcsStore(f"gs://{BUCKET}//norm/")

    assert (store.bucket_name, store.prefix) == (BUCKET, "norm")
    assert store.put_bytes(b"x", "a.bin") == f"gs://{BUCKET}/norm/a.bin"
    assert gcs.get(BUCKET, "norm/a.bin") is not None


def test_put_file_keeps_the_content_type_and_defaults_to_octet_stream(gcs: GcsFake, tmp_path: Path) -> None:
    store = GcsStore(f"gs://{BUCKET}/raw")
    csv = tmp_path / "in.csv"
    csv.write_bytes(b"date,value\n2024-01-01,3\n")

    assert store.put_file(csv, "a.csv", "text/csv") == f"gs://{BUCKET}/raw/a.csv"
    assert store.put_file(csv, "a.bin") == f"gs://{BUCKET}/raw/a.bin"

    assert read_back("raw/a.csv") == read_back("raw/a.bin") == csv.read_bytes()
    assert metadata("raw/a.csv").content_type == "text/csv"  # type: ignore[attr-defined]
    assert metadata("raw/a.bin").content_type == "application/octet-stream"  # type: ignore[attr-defined]


def test_object_names_with_reserved_characters_round_trip(gcs: GcsFake) -> None:
    store = GcsStore(f"gs://{BUCKET}/raw")
    name = "gdelt/date=2024-01-01/part 0+a~b.csv"

    uri = store.put_bytes(b"1", name)

    assert uri == f"gs://{BUCKET}/raw/{name}"
    assert store.exists(name)
    assert read_back(f"raw/{name}") == b"1"


def test_a_second_write_replaces_the_object_whole(gcs: GcsFake, tmp_path: Path) -> None:
    store = GcsStore(f"gs://{BUCKET}/raw")
    store.put_bytes(b"first attempt, longer than the second\n", "x/part-0.json", "application/json")
    first = metadata("raw/x/part-0.json").generation  # type: ignore[attr-defined]
    retry = tmp_path / "retry.json"
    retry.write_bytes(b"second\n")

    store.put_file(retry, "x/part-0.json", "text/plain")

    assert read_back("raw/x/part-0.json") == b"second\n"
    blob = metadata("raw/x/part-0.json")
    assert blob.generation > first  # type: ignore[attr-defined]
    assert blob.content_type == "text/plain"  # type: ignore[attr-defined]
    assert blob.size == len(b"second\n")  # type: ignore[attr-defined]
    assert len(gcs.objects) == 1


def test_exists(gcs: GcsFake) -> None:
    store = GcsStore(f"gs://{BUCKET}/raw")
    other = GcsStore(f"gs://{BUCKET}/norm")

    assert not store.exists("a.json")
    store.put_bytes(b"{}", "a.json")

    assert store.exists("a.json")
    assert not other.exists("a.json")  # the prefix is part of the key
    assert not store.exists("a")  # no prefix matching: GCS objects are exact keys
    assert ("GET", "/storage/v1/b/tributary-test/o/raw/a.json", None) in gcs.requests


def test_a_missing_bucket_fails_the_write_but_reads_as_absent(gcs: GcsFake) -> None:
    store = GcsStore("gs://no-such-bucket/raw")

    with pytest.raises(gexc.NotFound, match="bucket does not exist"):
        store.put_bytes(b"x", "a.json")
    # Both an unknown bucket and an unknown object answer 404, so exists() cannot tell them apart.
    assert store.exists("a.json") is False


def test_a_file_over_8_mib_goes_up_in_bounded_chunks(gcs: GcsFake, tmp_path: Path) -> None:
    """Left to the client, the whole file would go in ONE PUT read into memory (its default chunk is 100 MiB)."""
    big = tmp_path / "big.parquet"
    data = os.urandom(2 * UPLOAD_CHUNK + 123)  # over the client's 8 MiB multipart limit
    big.write_bytes(data)
    store = GcsStore(f"gs://{BUCKET}/norm")

    uri = store.put_file(big, "big.parquet", "application/vnd.apache.parquet")

    assert uri == f"gs://{BUCKET}/norm/big.parquet"
    # Initiate, then UPLOAD_CHUNK + UPLOAD_CHUNK + 123 bytes.
    assert gcs.upload_types() == ["resumable"] * 4
    assert [m for m, p, _ in gcs.requests if p.startswith("/upload/")] == ["POST", "PUT", "PUT", "PUT"]
    assert hashlib.sha256(read_back("norm/big.parquet")).digest() == hashlib.sha256(data).digest()
    blob = metadata("norm/big.parquet")
    assert blob.size == len(data)  # type: ignore[attr-defined]
    assert blob.content_type == "application/vnd.apache.parquet"  # type: ignore[attr-defined]


def test_a_file_of_8_mib_still_goes_in_one_multipart_request(gcs: GcsFake, tmp_path: Path) -> None:
    edge = tmp_path / "edge.bin"
    edge.write_bytes(os.urandom(8 * 1024 * 1024))

    GcsStore(f"gs://{BUCKET}").put_file(edge, "edge.bin")

    assert gcs.upload_types() == ["multipart"]
    assert read_back("edge.bin") == edge.read_bytes()


def test_the_fake_speaks_chunked_resumable_uploads(gcs: GcsFake, tmp_path: Path) -> None:
    """A check of the fake with the client's own chunking: 308 + Range between chunks, as GCS answers."""
    data = os.urandom(9 * 1024 * 1024)
    blob = storage().bucket(BUCKET).blob("chunked.bin", chunk_size=4 * 1024 * 1024)

    blob.upload_from_string(data)

    assert gcs.upload_types() == ["resumable"] * 4  # initiate + 4 MiB + 4 MiB + 1 MiB
    assert read_back("chunked.bin") == data


def test_a_503_on_upload_is_retried_by_the_client(gcs: GcsFake) -> None:
    gcs.fail_next_upload(503)

    GcsStore(f"gs://{BUCKET}/raw").put_bytes(b"payload", "r.json")

    assert gcs.upload_types() == ["multipart", "multipart"]
    assert read_back("raw/r.json") == b"payload"


def test_a_400_on_upload_is_not_retried(gcs: GcsFake) -> None:
    gcs.fail_next_upload(400)

    with pytest.raises(gexc.BadRequest):
        GcsStore(f"gs://{BUCKET}/raw").put_bytes(b"payload", "r.json")

    assert gcs.upload_types() == ["multipart"]
    assert gcs.objects == {}


def test_the_client_fetches_bucket_metadata_in_the_background(gcs: GcsFake) -> None:
    """google-cloud-storage 3.17 sends ``GET /storage/v1/b/{bucket}`` from a daemon thread on the first
    object call per bucket, to fill its bucket-metadata cache (docs/google-quirks.md)."""
    GcsStore(f"gs://{BUCKET}/raw").put_bytes(b"x", "a")

    deadline = time.monotonic() + 5.0
    while ("GET", f"/storage/v1/b/{BUCKET}", None) not in gcs.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ("GET", f"/storage/v1/b/{BUCKET}", None) in gcs.requests


def test_output_store_dispatches_on_the_scheme(gcs: GcsFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = output_store(f"gs://{BUCKET}/raw")
    assert isinstance(store, GcsStore)
    assert (store.bucket_name, store.prefix) == (BUCKET, "raw")
    assert isinstance(output_store(tmp_path.as_uri()), LocalStore)
    assert isinstance(output_store(str(tmp_path)), LocalStore)

    monkeypatch.setenv("TRIBUTARY_OUTPUT_URI", f"gs://{BUCKET}/from-settings")
    reset_settings()
    default = output_store()

    assert isinstance(default, GcsStore)
    assert default.put_bytes(b"via settings", "s.txt", "text/plain") == f"gs://{BUCKET}/from-settings/s.txt"
    assert read_back("from-settings/s.txt") == b"via settings"
