"""One contract, every store: LocalStore (disk), MemoryStore (tests) and B2Store (on
b2sdk's simulator) behave alike, the ways a body can end included.

Plus LocalStore's crash safety: a process that dies in the middle of a
checksummed chunk leaves `verifying_from` in the info file, and the next read
rolls the data back to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from b2_helpers import make_fake_b2
from store_helpers import (
    STORE_KINDS,
    Broken,
    broken_after,
    chunks,
    make_store,
    new_info,
    pieces,
    read_all,
    sha256,
)

from upload_service.core.store import (
    ChecksumMismatch,
    LocalStore,
    UploadGone,
    UploadNotFound,
    UploadStore,
)
from upload_service.core.store.body import ChunkBody

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> UploadStore:
    return make_store(request.param, tmp_path, make_fake_b2())


async def test_create_and_get(store: UploadStore) -> None:
    info = new_info(metadata={"filename": "a.mp4", "flag": None}, meta={"course": 1})
    info.kinds = ["video"]
    await store.create(info)
    got = await store.get("up1")
    assert (got.id, got.owner, got.length, got.offset) == ("up1", "user-1", 10, 0)
    assert got.metadata == {"filename": "a.mp4", "flag": None}
    assert (got.meta, got.kinds, got.finished) == ({"course": 1}, ["video"], False)
    assert "up1" in await store.list_ids()
    assert got.updated_at >= info.created_at - 1


async def test_create_never_overwrites(store: UploadStore) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    with pytest.raises(FileExistsError):
        await store.create(new_info())
    assert await read_all(store, "up1") == b"abc"


@pytest.mark.parametrize("upload_id", ["missing", "../etc/passwd", "a/b", "", "x" * 200])
async def test_get_unknown_is_not_found(store: UploadStore, upload_id: str) -> None:
    with pytest.raises(UploadNotFound):
        await store.get(upload_id)


async def test_write_appends_at_the_offset(store: UploadStore) -> None:
    await store.create(new_info())
    info = await store.get("up1")
    assert await store.write(info, chunks(b"ab", b"", b"cd"), 10) == 4
    info = await store.get("up1")
    assert info.offset == 4
    assert await store.write(info, chunks(b"efghij"), 6) == 10
    info = await store.get("up1")
    assert info.finished
    assert await read_all(store, "up1") == b"abcdefghij"


async def test_write_stops_at_the_limit(store: UploadStore) -> None:
    await store.create(new_info())
    info = await store.get("up1")
    assert await store.write(info, chunks(b"abc", b"defgh", b"ijk"), 5) == 5
    assert await read_all(store, "up1") == b"abcde"


async def test_write_of_a_large_body_in_many_chunks(store: UploadStore) -> None:
    data = os.urandom(3 * MIB + 17)
    await store.create(new_info(length=len(data)))
    digest = sha256(data)
    written = await store.write(await store.get("up1"), pieces(data, 65536), len(data), digest)
    assert written == len(data)
    assert await read_all(store, "up1") == data


async def test_checksum_match_keeps_the_chunk(store: UploadStore) -> None:
    await store.create(new_info())
    info = await store.get("up1")
    assert await store.write(info, chunks(b"ab", b"cd"), 10, sha256(b"abcd")) == 4
    assert await read_all(store, "up1") == b"abcd"
    assert (await store.get("up1")).verifying_from is None


async def test_checksum_mismatch_rolls_the_chunk_back(store: UploadStore) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    info = await store.get("up1")
    with pytest.raises(ChecksumMismatch):
        await store.write(info, chunks(b"de", b"fg"), 7, sha256(b"XXXX"))
    info = await store.get("up1")
    assert info.offset == 3 and info.verifying_from is None
    assert await read_all(store, "up1") == b"abc"
    assert await store.write(info, chunks(b"defg"), 7, sha256(b"defg")) == 7


async def test_broken_stream_keeps_what_arrived(store: UploadStore) -> None:
    await store.create(new_info())
    with pytest.raises(Broken):
        await store.write(await store.get("up1"), broken_after(b"abc", b"de"), 10)
    assert await read_all(store, "up1") == b"abcde"


async def test_a_large_body_cut_off_midway_keeps_every_byte_that_arrived(
    store: UploadStore,
) -> None:
    data = os.urandom(3 * MIB + 17)
    await store.create(new_info(length=8 * MIB))
    parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    with pytest.raises(Broken):
        await store.write(await store.get("up1"), broken_after(*parts), 8 * MIB)
    assert (await store.get("up1")).offset == len(data)
    assert await read_all(store, "up1") == data


async def test_a_cancelled_write_keeps_every_byte_that_arrived(store: UploadStore) -> None:
    """A shutdown cancels the request while the body waits for more: what arrived
    is stored, and a local file is closed."""
    data = os.urandom(2 * MIB + 5)
    await store.create(new_info(length=8 * MIB))
    all_sent = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]
        all_sent.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover

    info = await store.get("up1")
    async with anyio.create_task_group() as tg:
        tg.start_soon(store.write, info, ChunkBody(body()), 8 * MIB)
        await all_sent.wait()
        tg.cancel_scope.cancel()
    assert (await store.get("up1")).offset == len(data)
    assert await read_all(store, "up1") == data
    path = store.path("up1")
    if path is not None:
        assert open_descriptors_of(Path(path)) == 0


def open_descriptors_of(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in os.listdir(fds) if os.path.realpath(fds / fd) == str(path))


async def test_broken_checksummed_stream_keeps_nothing(store: UploadStore) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"ab"), 10)
    with pytest.raises(Broken):
        await store.write(await store.get("up1"), broken_after(b"cde"), 8, sha256(b"cdefg"))
    info = await store.get("up1")
    assert info.offset == 2 and info.verifying_from is None


async def test_reading_during_a_checksummed_write_does_not_disturb_it(store: UploadStore) -> None:
    """A HEAD (no lock) while a checksummed chunk streams in: the chunk is not
    counted until verified, and the reader must not roll back a live writer."""
    data = os.urandom(3 * 1024 * 1024)
    await store.create(new_info(length=len(data) + 4))
    await store.write(await store.get("up1"), chunks(b"head"), 4)
    half = anyio.Event()
    go_on = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 256 * 1024):
            if start == 2 * 1024 * 1024:
                half.set()
                await go_on.wait()
            yield data[start : start + 256 * 1024]

    async def write() -> None:
        info = await store.get("up1")
        assert await store.write(info, ChunkBody(body()), len(data), sha256(data)) == len(data) + 4

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        await half.wait()
        path = store.path("up1")
        if path is not None:  # wait until the writer has put unverified bytes on disk
            with anyio.fail_after(30):
                # A file's size has no event to wait on: poll it.
                while (await anyio.Path(path).stat()).st_size <= 4:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
        assert (await store.get("up1")).offset == 4
        go_on.set()
    info = await store.get("up1")
    assert info.offset == len(data) + 4 and info.finished
    assert await read_all(store, "up1") == b"head" + data


async def test_save_persists_fields_but_never_the_offset(store: UploadStore) -> None:
    await store.create(new_info(length=None))
    await store.write(await store.get("up1"), chunks(b"abc"), 100)
    info = await store.get("up1")
    info.length = 5
    info.offset = 999
    await store.save(info)
    got = await store.get("up1")
    assert (got.length, got.offset) == (5, 3)


async def test_terminate(store: UploadStore) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    await store.terminate("up1")
    with pytest.raises(UploadNotFound):
        await store.get("up1")
    assert "up1" not in await store.list_ids()
    await store.terminate("up1")  # twice is harmless
    await store.create(new_info())  # and the id is free again


async def test_expire_drops_the_bytes_and_answers_gone(store: UploadStore) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    await store.expire("up1")
    with pytest.raises(UploadGone):
        await store.get("up1")
    assert "up1" in await store.list_ids()  # kept, so the id answers 410, not 404
    path = store.path("up1")
    assert path is None or not await anyio.Path(path).exists()


async def test_concatenate(store: UploadStore) -> None:
    parts = []
    for name, data in (("p1", b"hello "), ("p2", b""), ("p3", b"world")):
        await store.create(new_info(name, length=len(data), concat="partial"))
        await store.write(await store.get(name), chunks(data), len(data))
        parts.append(await store.get(name))
    final = new_info("fin", length=None, concat="final", parts=["p1", "p2", "p3"])
    await store.create(final)
    await store.concatenate(final, parts)
    assert (final.length, final.offset) == (11, 11)
    got = await store.get("fin")
    assert got.finished and got.length == 11 and got.parts == ["p1", "p2", "p3"]
    assert await read_all(store, "fin") == b"hello world"
    assert await read_all(store, "p1") == b"hello "  # the parts are left alone


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0, 10, b"0123456789"), (0, 1, b"0"), (3, 7, b"3456"), (9, 10, b"9"), (4, 4, b"")],
)
async def test_open_range(store: UploadStore, start: int, end: int, expected: bytes) -> None:
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"0123456789"), 10)
    assert b"".join([b async for b in store.open_range("up1", start, end)]) == expected


async def test_open_range_streams_in_bounded_blocks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = os.urandom(2 * 1024 * 1024)
    await store.create(new_info(length=len(data)))
    await store.write(await store.get("up1"), chunks(data), len(data))
    blocks = [b async for b in store.open_range("up1", 1, len(data) - 1)]
    assert len(blocks) > 1 and max(map(len, blocks)) <= 1024 * 1024
    assert b"".join(blocks) == data[1:-1]


# -- LocalStore crash safety -----------------------------------------------------------


def leave_an_unverified_chunk(directory: Path, start: int) -> None:
    info_path = directory / "up1.info"
    record = json.loads(info_path.read_text())
    record["verifying_from"] = start
    info_path.write_text(json.dumps(record))
    with open(directory / "up1", "ab") as f:
        f.write(b"half a chunk whose digest was never compared")


@pytest.mark.parametrize("checksummed", [False, True])
async def test_leftover_verifying_from_rolls_back(tmp_path: Path, checksummed: bool) -> None:
    """What a SIGKILL mid checksummed chunk leaves behind, built by hand."""
    store = LocalStore(tmp_path)
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    info_path = tmp_path / "up1.info"
    await anyio.to_thread.run_sync(leave_an_unverified_chunk, tmp_path, 3)
    info = await store.get("up1")
    assert info.offset == 3  # the unverified tail does not count
    assert (await store.get("up1")).offset == 3
    # The next writer (it holds the lock, so the old one is dead) cuts the tail off.
    digest = sha256(b"defg") if checksummed else None
    assert await store.write(info, chunks(b"defg"), 7, digest) == 7
    assert (tmp_path / "up1").read_bytes() == b"abcdefg"
    assert json.loads(info_path.read_text())["verifying_from"] is None
    assert (await store.get("up1")).offset == 7


async def test_an_empty_append_after_a_dead_writer_still_cuts_its_chunk(tmp_path: Path) -> None:
    """A body may end before its first byte: the append opens no file for writing,
    and must still cut off what a dead writer left unverified."""
    store = LocalStore(tmp_path)
    await store.create(new_info())
    await store.write(await store.get("up1"), chunks(b"abc"), 10)
    await anyio.to_thread.run_sync(leave_an_unverified_chunk, tmp_path, 3)
    assert await store.write(await store.get("up1"), chunks(b""), 7) == 3
    assert (tmp_path / "up1").read_bytes() == b"abc"
    assert json.loads((tmp_path / "up1.info").read_text())["verifying_from"] is None


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    from upload_service.core.store import LocalStore
    from upload_service.core.store.body import ChunkBody

    async def body():
        for _ in range(8):
            yield b"x" * (1024 * 1024)
        print("sent", flush=True)
        await asyncio.Event().wait()  # the client stalls; the process dies here

    async def main():
        store = LocalStore(sys.argv[1])
        info = await store.get("up1")
        checksum = (hashlib.sha256(), hashlib.sha256(b"whatever").digest())
        await store.write(info, ChunkBody(body()), 100 * 1024 * 1024, checksum)

    asyncio.run(main())
    """
)


def kill_a_writer_mid_checksummed_chunk(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
        deadline = time.monotonic() + 30
        # Wait until the unverified bytes are really on disk, then kill.
        while os.path.getsize(tmp_path / "up1") <= 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.getsize(tmp_path / "up1") > 4
        assert json.loads((tmp_path / "up1.info").read_text())["verifying_from"] == 4
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


async def test_sigkill_mid_checksummed_write_rolls_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await store.create(new_info(length=100 * 1024 * 1024))
    await store.write(await store.get("up1"), chunks(b"kept"), 4)
    await anyio.to_thread.run_sync(kill_a_writer_mid_checksummed_chunk, tmp_path)
    info = await store.get("up1")
    assert info.offset == 4  # after a restart HEAD says 4: the chunk was never verified
    assert await store.write(info, chunks(b" going"), 6) == 10
    assert (tmp_path / "up1").read_bytes() == b"kept going"
    info = await store.get("up1")
    assert info.offset == 10 and info.verifying_from is None
