"""`GET /v1/uploads?owner=&state=&created_after=&cursor=&limit=`, on both states.

Uploads are created through the tus endpoint of the real app; the listing
comes from the state, so it holds uploads whose cache entries are gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis
from conftest import API_KEY
from protocol_helpers import app_client
from state_helpers import STATE_KINDS, state_settings
from tus_helpers import create, patch

from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio
BACKEND = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(params=STATE_KINDS)
async def api(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    async with app_client(state_settings(settings, request.param, url)) as client:
        yield client


async def listing(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get("/v1/uploads", params=params, headers=BACKEND)


async def test_listing_filters_and_pages(
    api: httpx.AsyncClient, make_token: Callable[..., str], redis_client: redis.Redis
) -> None:
    alice, bob = make_token("alice"), make_token("bob")
    made = []
    for n in range(5):
        token = alice if n % 2 == 0 else bob
        upload_id = await create(api, token, 4)
        if n < 2:  # the first two finish
            assert (await patch(api, token, upload_id, 0, b"abcd")).status_code == 204
        made.append(upload_id)
    redis_client.flushall()  # the listing never needed the cache

    everything = (await listing(api)).json()
    assert [u["id"] for u in everything["uploads"]] == made
    assert everything["next_cursor"] is None

    mine = (await listing(api, owner="alice")).json()["uploads"]
    assert [u["id"] for u in mine] == made[0::2] and {u["owner"] for u in mine} == {"alice"}
    done = (await listing(api, state="uploaded")).json()["uploads"]
    assert [u["id"] for u in done] == made[:2]
    assert (await listing(api, owner="bob", state="uploading,failed")).json()["uploads"] == [
        u for u in everything["uploads"] if u["id"] == made[3]
    ]
    after = everything["uploads"][2]["created_at"]
    later = (await listing(api, created_after=after)).json()["uploads"]
    assert [u["id"] for u in later] == made[3:]

    pages, cursor, seen = 0, None, []
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        r = await listing(api, **params)
        assert r.status_code == 200 and r.headers["etag"]
        body = r.json()
        seen += [u["id"] for u in body["uploads"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == made and pages == 3


async def test_listing_is_for_the_backend_only(
    api: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    token = make_token("alice")
    await create(api, token, 4)
    as_owner = await api.get("/v1/uploads", headers={"Authorization": f"Bearer {token}"})
    assert as_owner.status_code == 401
    assert (await api.get("/v1/uploads")).status_code == 401
    wrong = await api.get("/v1/uploads", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"state": "done"}, "state must be among"),
        ({"created_after": "yesterday"}, "created_after must be an ISO 8601 time"),
        ({"limit": "0"}, "limit must be an integer from 1 to 500"),
        ({"limit": "501"}, "limit must be an integer from 1 to 500"),
        ({"cursor": "bm9wZQ"}, "cursor is not one this service handed out"),
        ({"ids": "a,b", "owner": "alice"}, "the listing's filters go without it"),
    ],
)
async def test_listing_refuses_what_it_does_not_understand(
    api: httpx.AsyncClient, params: dict[str, str], says: str
) -> None:
    r = await listing(api, **params)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_request"
    assert says in r.json()["error"]["message"]
