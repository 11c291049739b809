"""The B2 upload store on b2sdk's RawSimulator: B2's own rules (the store contract,
which B2Store keeps too, is in test_store_contract.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from b2_helpers import MB, PART, FakeB2, make_fake_b2
from store_helpers import Broken, broken_after, chunks, new_info, pieces, read_all, sha256
from store_helpers import b2_store as make_b2_store
from tus_helpers import checksum, create, download, head, patch

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.settings import Settings
from upload_service.core.store import ChecksumMismatch
from upload_service.core.store.b2 import B2Store
from upload_service.core.store.spool import Spool
from upload_service.http.app import create_app
from upload_service.http.services import Services

pytestmark = pytest.mark.anyio


@pytest.fixture
def fake_b2() -> FakeB2:
    return make_fake_b2()


@pytest.fixture
def b2_store(fake_b2: FakeB2) -> B2Store:
    return make_b2_store(fake_b2)


def objects(fake: FakeB2) -> dict[str, list[object]]:
    return fake.versions("tus/")


async def test_large_upload_over_many_requests_becomes_one_b2_file(
    b2_store: B2Store, fake_b2: FakeB2
) -> None:
    data = os.urandom(12 * MB + 12345)
    await b2_store.create(new_info(length=len(data), metadata={"filetype": "video/mp4"}))
    # Requests of odd sizes, none aligned to the 5 MB parts.
    offset = 0
    for size in (3 * MB + 1, 4 * MB, 7, 5 * MB + 100):
        info = await b2_store.get("up1")
        assert info.offset == offset
        offset = await b2_store.write(info, pieces(data[offset : offset + size], 65536), size)
    info = await b2_store.get("up1")
    assert info.offset == offset
    offset = await b2_store.write(info, pieces(data[offset:], 65536), len(data) - offset)
    assert offset == len(data)

    info = await b2_store.get("up1")
    assert info.finished and info.offset == len(data)
    # One finished object, no tail, nothing unfinished; its bytes are the upload's.
    assert sorted(objects(fake_b2)) == ["tus/up1/data", "tus/up1/info"]
    [version] = objects(fake_b2)["tus/up1/data"]
    assert version.size == len(data)  # type: ignore[attr-defined]
    assert version.content_type == "video/mp4"  # type: ignore[attr-defined]
    assert fake_b2.unfinished() == []
    assert await read_all(b2_store, "up1") == data
    assert hashlib.sha1(await read_all(b2_store, "up1")).digest() == hashlib.sha1(data).digest()


async def test_parts_go_to_b2_while_the_upload_is_running(
    b2_store: B2Store, fake_b2: FakeB2
) -> None:
    data = os.urandom(11 * MB)
    await b2_store.create(new_info(length=len(data)))
    with pytest.raises(Broken):
        await b2_store.write(await b2_store.get("up1"), broken_after(data[: 6 * MB]), len(data))
    # 5 MB went up as part 1, the last 1 MB waits in the tail: offset counts both.
    [unfinished] = fake_b2.unfinished()
    parts = list(fake_b2.api.services.large_file.list_parts(unfinished.file_id))  # type: ignore[attr-defined]
    assert [p.content_length for p in parts] == [PART]
    assert (await b2_store.get("up1")).offset == 6 * MB
    # Another server process (a new store, nothing shared) resumes it.
    other = make_b2_store(fake_b2)
    info = await other.get("up1")
    assert await other.write(info, pieces(data[6 * MB :], 1 << 20), 5 * MB) == len(data)
    assert await read_all(other, "up1") == data
    assert fake_b2.unfinished() == []


async def test_a_stale_tail_is_never_counted_twice(b2_store: B2Store, fake_b2: FakeB2) -> None:
    data = os.urandom(7 * MB)
    await b2_store.create(new_info(length=len(data)))
    await b2_store.write(await b2_store.get("up1"), pieces(data[: 3 * MB], 1 << 20), 3 * MB)
    # A crash right after a part went up, before the tail was replaced: the
    # old tail (3 MB, tagged "0 parts") and the new part (holding those
    # bytes) are both in B2. Built by hand: upload part 1 ourselves.
    tail = fake_b2.bucket.get_file_info_by_name("tus/up1/tail")
    assert tail.file_info == {"parts": "0"}
    state = b2_store._read_state("up1")
    state.large_file_id = b2_store._start_large_file("up1", state.info)
    spool_data = data[: 5 * MB + 1]
    spool = Spool(None)
    spool.append(spool_data)
    b2_store._flush_parts("up1", state, spool).close()
    spool.close()
    # The tail still says "after 0 parts", there is 1 now: it no longer counts.
    assert (await b2_store.get("up1")).offset == PART


async def test_bad_checksum_sends_nothing_to_b2(b2_store: B2Store, fake_b2: FakeB2) -> None:
    data = os.urandom(11 * MB)
    await b2_store.create(new_info(length=len(data)))
    with pytest.raises(ChecksumMismatch):
        await b2_store.write(
            await b2_store.get("up1"), pieces(data, 1 << 20), len(data), sha256(b"other")
        )
    assert fake_b2.unfinished() == []
    assert sorted(objects(fake_b2)) == ["tus/up1/info"]
    assert (await b2_store.get("up1")).offset == 0
    digest = sha256(data)
    assert await b2_store.write(await b2_store.get("up1"), chunks(data), len(data), digest) == len(
        data
    )
    assert await read_all(b2_store, "up1") == data


async def test_deferred_length_completes_on_save(b2_store: B2Store, fake_b2: FakeB2) -> None:
    await b2_store.create(new_info(length=None))
    await b2_store.write(await b2_store.get("up1"), chunks(b"hello"), 100)
    info = await b2_store.get("up1")
    info.length = 5
    await b2_store.save(info)
    assert (await b2_store.get("up1")).finished
    assert sorted(objects(fake_b2)) == ["tus/up1/data", "tus/up1/info"]


async def test_terminate_cancels_the_unfinished_large_file(
    b2_store: B2Store, fake_b2: FakeB2
) -> None:
    await b2_store.create(new_info(length=20 * MB))
    await b2_store.write(await b2_store.get("up1"), pieces(os.urandom(6 * MB), 1 << 20), 6 * MB)
    assert fake_b2.unfinished() != []
    await b2_store.terminate("up1")
    assert fake_b2.unfinished() == []
    assert objects(fake_b2) == {}


@pytest.fixture
async def b2_client(
    settings: Settings, jobs: MemoryJobQueue, b2_store: B2Store
) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app (real Redis, locks, status) with the B2 store in place of the disk."""
    services = Services.from_settings(settings, jobs=jobs, store=b2_store)
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    await services.aclose()


async def test_tus_upload_through_the_app_lands_in_b2(
    b2_client: httpx.AsyncClient,
    fake_b2: FakeB2,
    make_token: Callable[..., str],
    jobs: MemoryJobQueue,
) -> None:
    token = make_token()
    data = os.urandom(11 * MB + 3)
    upload_id = await create(b2_client, token, len(data))
    offset = 0
    for size in (4 * MB, 5 * MB, 2 * MB + 3):  # three PATCHes, one checksummed
        extra = {"Upload-Checksum": checksum("sha1", data[offset : offset + size])}
        r = await patch(
            b2_client,
            token,
            upload_id,
            offset,
            data[offset : offset + size],
            **(extra if size == 5 * MB else {}),
        )
        assert r.status_code == 204, r.text
        offset += size
        assert int((await head(b2_client, token, upload_id)).headers["upload-offset"]) == offset
    assert await download(b2_client, token, upload_id) == data
    assert ("process_upload", (upload_id,)) in jobs.sent
    [version] = fake_b2.versions(f"tus/{upload_id}/")[f"tus/{upload_id}/data"]
    assert version.size == len(data)  # type: ignore[attr-defined]
    assert fake_b2.unfinished() == []
