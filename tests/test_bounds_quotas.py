"""Per-user quotas: one token can no longer create uploads without end. Past the
unfinished limit or the creation rate, a creation answers 429 with Retry-After and a
code, and stores nothing; finishing or deleting an upload frees a place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
import redis
from protocol_helpers import app_client, assert_error, stored_ids, tus
from tus_helpers import create, patch

from upload_service.core.jobs import MemoryJobQueue
from upload_service.core.quotas import CREATED_PREFIX, UNFINISHED_PREFIX
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio


def forget(redis_client: redis.Redis, sub: str) -> None:
    redis_client.delete(UNFINISHED_PREFIX + sub, CREATED_PREFIX + sub)


async def test_unfinished_uploads_per_user_are_capped_and_freed_by_finishing_or_deleting(
    settings: Settings, make_token: Callable[..., str], redis_client: redis.Redis
) -> None:
    forget(redis_client, "quota-user")
    forget(redis_client, "other-user")
    limited = dataclasses.replace(settings, max_unfinished=3, creation_rate=0)
    token, other = make_token("quota-user"), make_token("other-user")
    async with app_client(limited, MemoryJobQueue()) as client:
        ids = [await create(client, token, 5) for _ in range(3)]
        r = await client.post("/files/", headers=tus(token, Upload_Length="5"))
        assert_error(r, 429, "too_many_uploads")
        assert int(r.headers["retry-after"]) > 0
        assert len(stored_ids(limited)) == 3  # the refused creation stored nothing
        await create(client, other, 5)  # another user is not affected
        # Finishing one frees a place; so does deleting one.
        assert (await patch(client, token, ids[0], 0, b"12345")).status_code == 204
        await create(client, token, 5)
        assert_error(await client.post("/files/", headers=tus(token, Upload_Length="5")), 429)
        assert (await client.delete(f"/files/{ids[1]}", headers=tus(token))).status_code == 204
        await create(client, token, 5)
        # A count that drifted (an entry whose upload ended without telling it) is
        # checked against the records before anyone is refused.
        redis_client.sadd(UNFINISHED_PREFIX + "quota-user", "ghost-1", "ghost-2")
        assert_error(await client.post("/files/", headers=tus(token, Upload_Length="5")), 429)
        assert (await patch(client, token, ids[2], 0, b"12345")).status_code == 204
        await create(client, token, 5)


async def test_creation_rate_per_user_is_a_sliding_window_with_retry_after(
    settings: Settings, make_token: Callable[..., str], redis_client: redis.Redis
) -> None:
    forget(redis_client, "fast-user")
    limited = dataclasses.replace(settings, max_unfinished=0, creation_rate=5, creation_window=3600)
    token = make_token("fast-user")
    async with app_client(limited, MemoryJobQueue()) as client:
        for _ in range(5):
            await create(client, token, 0)  # complete at once: only the rate counts
        refused = []
        for headers in (
            tus(token, Upload_Length="5"),
            tus(token, Upload_Defer_Length="1"),
        ):
            r = await client.post("/files/", headers=headers)
            assert_error(r, 429, "creation_rate_limited")
            refused.append(int(r.headers["retry-after"]))
        assert all(0 < wait <= 3600 for wait in refused)
        # The draft's creation is held to the same limit.
        draft = {
            "Authorization": f"Bearer {token}",
            "Upload-Draft-Interop-Version": "6",
            "Upload-Complete": "?1",
        }
        assert_error(await client.post("/files/", headers=draft, content=b"x"), 429)
        assert len(stored_ids(limited)) == 5
        # A window that slid past frees places again.
        redis_client.delete(CREATED_PREFIX + "fast-user")
        await create(client, token, 5)


async def test_quota_settings_are_on_by_default() -> None:
    defaults = Settings()
    assert defaults.max_unfinished > 0 and defaults.creation_rate > 0


async def test_without_limits_no_quota_keys_are_kept(
    client: httpx.AsyncClient, make_token: Callable[..., str], redis_client: redis.Redis
) -> None:
    forget(redis_client, "free-user")
    await create(client, make_token("free-user"), 5)
    assert not redis_client.exists(UNFINISHED_PREFIX + "free-user", CREATED_PREFIX + "free-user")
