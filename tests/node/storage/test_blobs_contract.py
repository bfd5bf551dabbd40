"""Both blob backends keep one contract (node/storage/blobs.py): append, sync, read any
range, cut back to the last durable offset after a crash and go on from there; two
stores on the same place (two replicas) see the same blobs. The PostgreSQL backend runs
when MLAX_TEST_PG_URL is set, in a database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exchange.errors import RetryLaterError
from node.devtools.databases import TEST_PG_ENV, pg_database
from node.storage import blobs
from node.storage.blobs import BlobStore, LocalBlobStore, PgBlobStore, open_blob_store
from node.storage.db import Database

MakeStore = Callable[[], BlobStore]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set")
    with pg_database(base, "mlax_blobs") as url:
        db = Database(url)
        db.migrate()
        db.close()
        yield url


@pytest.fixture(params=["filesystem", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(backend name, URL, directory): what `open_blob_store` takes."""
    if request.param == "postgresql":
        yield "postgresql", request.getfixturevalue("pg_url"), tmp_path
    else:
        yield "filesystem", "", tmp_path / "blobs"


@pytest.fixture
def make_store(backend: tuple[str, str, Path]) -> Iterator[MakeStore]:
    made: list[BlobStore] = []

    def make() -> BlobStore:
        store = open_blob_store(backend[0], backend[2], backend[1], pool_size=2)
        made.append(store)
        return store

    yield make
    for store in made:
        if isinstance(store, PgBlobStore):
            store.close()


def _id() -> str:
    return uuid.uuid4().hex


def test_appends_read_back_by_range_from_another_store(make_store: MakeStore) -> None:
    writer_store, reader_store = make_store(), make_store()
    blob = _id()
    pieces = [os.urandom(n) for n in (1000, 70_000, 1, 300_000)]
    w = writer_store.open_append(blob, 0)
    try:
        for p in pieces:
            w.write(p)
        w.sync()
    finally:
        w.close()
    whole = b"".join(pieces)
    assert reader_store.size(blob) == len(whole)
    # Ranges inside one write, across several, at the end and past it.
    for offset, length in ((0, 1000), (500, 1000), (999, 70_003), (0, len(whole)), (71_000, 10**6)):
        assert reader_store.read(blob, offset, length) == whole[offset : offset + length]
    assert reader_store.read(blob, len(whole), 10) == b""
    # Appending later, in another writer, continues the same blob.
    w = reader_store.open_append(blob, len(whole))
    w.write(b"tail")
    w.sync()
    w.close()
    assert writer_store.read(blob, len(whole) - 2, 10) == whole[-2:] + b"tail"


def test_open_append_cuts_back_to_keep_even_inside_one_write(make_store: MakeStore) -> None:
    store = make_store()
    blob = _id()
    data = os.urandom(200_000)
    w = store.open_append(blob, 0)
    w.write(data[:100_000])
    w.write(data[100_000:])
    w.sync()
    w.close()
    w = store.open_append(blob, 150_000)
    w.write(b"new")
    w.sync()
    w.close()
    assert store.size(blob) == 150_003
    assert store.read(blob, 0, 10**6) == data[:150_000] + b"new"


def test_keep_beyond_the_stored_size_is_refused(make_store: MakeStore) -> None:
    store = make_store()
    blob = _id()
    with pytest.raises(ValueError, match="keep"):
        store.open_append(blob, 10)
    w = store.open_append(blob, 0)  # the refusal left nothing locked or half made
    w.write(b"abc")
    w.sync()
    w.close()
    assert store.size(blob) == 3


def test_absent_and_deleted_blobs_are_empty(make_store: MakeStore) -> None:
    store = make_store()
    blob = _id()
    assert store.size(blob) == 0
    w = store.open_append(blob, 0)
    w.write(b"x" * 10)
    w.sync()
    w.close()
    store.delete(blob)
    assert store.size(blob) == 0
    store.delete(blob)  # twice is fine
    with pytest.raises(ValueError, match="hex"):
        store.size("../etc/passwd")


_CRASH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from node.storage.blobs import open_blob_store
    backend, url, root, blob = sys.argv[1:5]
    store = open_blob_store(backend, Path(root), url, pool_size=1)
    w = store.open_append(blob, 0)
    w.write(b"a" * 300_000)
    w.write(b"b" * 300_000)
    w.sync()
    w.write(b"c" * 150_000)  # half a chunk, never synced
    print("written", flush=True)
    os._exit(9)  # a crash: no close, no sync, no unlock
    """
)


def test_a_crash_keeps_what_was_synced_and_the_blob_resumes_from_there(
    make_store: MakeStore, backend: tuple[str, str, Path]
) -> None:
    name, url, root = backend
    blob = _id()
    done = subprocess.run(
        [sys.executable, "-c", _CRASH, name, url, str(root), blob],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    store = make_store()
    # What was synced is there; the unsynced half chunk may or may not be (a file keeps
    # what reached the page cache, a database rolls it back), and is cut off by resuming.
    assert 600_000 <= store.size(blob) <= 750_000
    assert store.read(blob, 0, 600_000) == b"a" * 300_000 + b"b" * 300_000
    w = store.open_append(blob, 600_000)  # the crashed writer holds no lock any more
    w.write(b"d" * 10)
    w.sync()
    w.close()
    assert store.size(blob) == 600_010
    assert store.read(blob, 599_990, 100) == b"b" * 10 + b"d" * 10


def test_unsynced_bytes_of_a_closed_writer_do_not_survive_on_postgresql(
    make_store: MakeStore, backend: tuple[str, str, Path]
) -> None:
    if backend[0] != "postgresql":
        pytest.skip("a file keeps written bytes in the page cache; the contract allows both")
    store = make_store()
    blob = _id()
    w = store.open_append(blob, 0)
    w.write(b"kept")
    w.sync()
    w.write(b"lost")
    w.close()
    assert store.read(blob, 0, 100) == b"kept"


def test_one_writer_per_blob(make_store: MakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both backends: a second writer (another stream, process or replica) is refused, once
    # it has waited its while for the first to go.
    monkeypatch.setattr(blobs, "LOCK_WAIT_SECONDS", 0.3)
    first, second = make_store(), make_store()
    blob = _id()
    w = first.open_append(blob, 0)
    try:
        with pytest.raises(RetryLaterError):
            second.open_append(blob, 0)
    finally:
        w.close()
    second.open_append(blob, 0).close()  # free again once the first closed


def test_a_local_store_keeps_files_private(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    w = store.open_append("abcdef", 0)
    w.write(b"x")
    w.sync()
    w.close()
    assert (tmp_path / "blobs").stat().st_mode & 0o077 == 0
    assert (tmp_path / "blobs" / "ab" / "abcdef").stat().st_mode & 0o077 == 0
