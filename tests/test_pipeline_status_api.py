"""The status API as the backend and browsers use it: auth, batch, ETag, durability."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, LiveServer, RedisServer
from media_helpers import make_text_file
from pipeline_helpers import upload_file
from redis import Redis
from status_helpers import bearer, create

from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore

pytestmark = pytest.mark.one_path


@pytest.mark.anyio
async def test_who_may_read_a_status(client: httpx.AsyncClient, make_token: Callable) -> None:
    owner = make_token("user-1", meta={"course_id": 12})
    upload_id = await create(client, owner)
    url = f"/v1/uploads/{upload_id}"

    as_backend = await client.get(url, headers=bearer(API_KEY))
    assert as_backend.status_code == 200
    record = as_backend.json()
    assert record["id"] == upload_id and record["owner"] == "user-1"
    assert record["state"] == "uploading" and record["length"] == 10
    assert record["meta"] == {"course_id": 12}
    assert record["metadata"] == {"filename": "lesson.mp4"}
    for key in ("progress", "media", "error"):
        assert record[key] is None

    as_owner = await client.get(url, headers=bearer(owner))
    assert as_owner.status_code == 200 and as_owner.json() == record
    # Someone else's token: as if the upload did not exist.
    assert (await client.get(url, headers=bearer(make_token("user-2")))).status_code == 404
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=bearer("not-the-key"))).status_code == 401
    expired = make_token("user-1", ttl=-10)
    assert (await client.get(url, headers=bearer(expired))).status_code == 401
    assert (await client.get("/v1/uploads/nope", headers=bearer(API_KEY))).status_code == 404


@pytest.mark.anyio
async def test_batch_leaves_out_unknown_and_foreign_ids(
    client: httpx.AsyncClient, make_token: Callable
) -> None:
    mine = [await create(client, make_token("user-1")) for _ in range(2)]
    theirs = await create(client, make_token("user-2"))
    ids = ",".join([*mine, "unknown-id", theirs])

    backend = await client.get(f"/v1/uploads?ids={ids}", headers=bearer(API_KEY))
    assert backend.status_code == 200
    assert [u["id"] for u in backend.json()["uploads"]] == [*mine, theirs]

    owner = await client.get(f"/v1/uploads?ids={ids}", headers=bearer(make_token("user-1")))
    assert [u["id"] for u in owner.json()["uploads"]] == mine

    assert (await client.get(f"/v1/uploads?ids={ids}")).status_code == 401
    too_many = ",".join(f"id{i}" for i in range(101))
    response = await client.get(f"/v1/uploads?ids={too_many}", headers=bearer(API_KEY))
    assert response.status_code == 400


@pytest.mark.anyio
async def test_etag_answers_304_until_the_record_changes(
    client: httpx.AsyncClient, make_token: Callable, settings: Settings
) -> None:
    upload_id = await create(client, make_token())
    url = f"/v1/uploads/{upload_id}"
    first = await client.get(url, headers=bearer(API_KEY))
    etag = first.headers["etag"]
    again = await client.get(url, headers={**bearer(API_KEY), "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag

    batch_url = f"/v1/uploads?ids={upload_id}"
    batch = await client.get(batch_url, headers=bearer(API_KEY))
    batch_etag = batch.headers["etag"]
    headers = {**bearer(API_KEY), "If-None-Match": batch_etag}
    assert (await client.get(batch_url, headers=headers)).status_code == 304

    # A worker moves it on: the next poll gets the new record and a new tag.
    store = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    store.update(upload_id, state="processing", progress={"stage": "probe", "percent": 0.0})
    changed = await client.get(url, headers={**bearer(API_KEY), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["progress"] == {"stage": "probe", "percent": 0.0}
    assert (await client.get(batch_url, headers=headers)).status_code == 200


@pytest.mark.anyio
async def test_if_none_match_reads_as_http_says(
    client: httpx.AsyncClient, make_token: Callable
) -> None:
    upload_id = await create(client, make_token())
    url = f"/v1/uploads/{upload_id}"
    etag = (await client.get(url, headers=bearer(API_KEY))).headers["etag"]

    def poll(value: str) -> dict[str, str]:
        return {**bearer(API_KEY), "If-None-Match": value}

    # `*` matches any current representation: the record exists, so nothing changed.
    assert (await client.get(url, headers=poll("*"))).status_code == 304
    assert (await client.get(f"/v1/uploads?ids={upload_id}", headers=poll("*"))).status_code == 304
    # A list of tags, and weak tags, compared weakly as GET does.
    assert (await client.get(url, headers=poll(f'"other", {etag}'))).status_code == 304
    assert (await client.get(url, headers=poll(f"W/{etag}"))).status_code == 304
    assert (await client.get(url, headers=poll('"other"'))).status_code == 200
    # Nothing to match against: the 404 stands.
    assert (await client.get("/v1/uploads/nope", headers=poll("*"))).status_code == 404


@pytest.mark.anyio
async def test_a_wrong_api_key_is_called_a_wrong_api_key(
    client: httpx.AsyncClient, make_token: Callable
) -> None:
    upload_id = await create(client, make_token())
    for url in (f"/v1/uploads/{upload_id}", f"/v1/uploads?ids={upload_id}", f"/files/{upload_id}"):
        resp = await client.get(url, headers=bearer("not-the-key"))
        assert resp.status_code == 401
        assert resp.json()["error"]["message"] == (
            "wrong API key: it does not match the server's UPLOAD_API_KEY"
        ), url
    events = await client.get(f"/v1/uploads/{upload_id}/events", headers=bearer("not-the-key"))
    assert events.status_code == 401 and "wrong API key" in events.json()["error"]["message"]
    # On tus requests the API key has no place: a non-token says it is not a token.
    tus = await client.head(
        f"/files/{upload_id}", headers={**bearer("not-the-key"), "Tus-Resumable": "1.0.0"}
    )
    assert tus.status_code == 401
    patch = await client.patch(
        f"/files/{upload_id}",
        content=b"x",
        headers={
            **bearer("not-the-key"),
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert (
        patch.json()["error"]["message"]
        == "invalid upload token: not a JWT (three dot-separated parts)"
    )


@pytest.mark.anyio
async def test_status_survives_a_redis_restart(
    client: httpx.AsyncClient,
    make_token: Callable,
    settings: Settings,
    redis_server: RedisServer,
) -> None:
    upload_id = await create(client, make_token(), body=b"0123456789")
    store = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    store.update(upload_id, state="ready", outputs={"hls": "/media/x/hls/master.m3u8"})
    before = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    assert before.json()["state"] == "ready"

    redis_server.restart()  # every key is gone: the cache, the queues
    assert Redis.from_url(settings.redis_url).dbsize() == 0

    after = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(API_KEY))
    assert after.status_code == 200
    assert after.json() == before.json()
    assert after.headers["etag"] == before.headers["etag"]
    batch = await client.get(f"/v1/uploads?ids={upload_id}", headers=bearer(API_KEY))
    assert batch.json()["uploads"] == [before.json()]


# -- a real server: its near cache of status bodies (upload_service.fastpath.near_cache) ----


def test_live_server_sees_every_worker_write_at_once(
    live_server: LiveServer, settings: Settings, make_token: Callable
) -> None:
    upload_id = upload_file(
        live_server.url, make_token(), make_text_file(Path(settings.data_dir.parent / "x.txt"))
    )
    store = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    url = f"{live_server.url}/v1/uploads/{upload_id}"
    with httpx.Client(headers=bearer(API_KEY)) as http:
        for percent in range(0, 100, 5):
            store.update(
                upload_id,
                state="processing",
                progress={"stage": "transcode", "percent": float(percent)},
            )
            # Polled twice so the second read can come from the server's cache.
            for _ in range(2):
                assert http.get(url).json()["progress"]["percent"] == percent


def test_live_server_status_through_a_redis_restart(
    live_server: LiveServer, settings: Settings, make_token: Callable, redis_server: RedisServer
) -> None:
    upload_id = upload_file(
        live_server.url, make_token(), make_text_file(Path(settings.data_dir.parent / "y.txt"))
    )
    store = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    store.update(upload_id, state="ready", outputs={"hls": "/media/y/hls/master.m3u8"})
    url = f"{live_server.url}/v1/uploads/{upload_id}"
    with httpx.Client(headers=bearer(API_KEY)) as http:
        before = http.get(url).json()
        assert before["state"] == "ready"
        redis_server.restart()
        assert http.get(url).json() == before
        # A write after the restart reaches pollers once the server has resubscribed.
        store = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
        store.update(upload_id, state="failed", error={"code": "x", "message": "y"})
        deadline = time.monotonic() + 5
        while http.get(url).json()["state"] != "failed":
            assert time.monotonic() < deadline, "the server kept serving the old record"
            time.sleep(0.05)
