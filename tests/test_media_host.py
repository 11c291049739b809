"""UPLOAD_PUBLIC_URL, MEDIA_PUBLIC_URL, and the split between the service's host and media's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import API_KEY
from protocol_helpers import app_client

from processors.publish import LocalPublisher, make_publisher
from upload_service.core.settings import Settings

pytestmark = pytest.mark.anyio

SERVICE = "upload.example.com"
MEDIA = "media.example.com"


def test_where_urls_point(tmp_path: Path) -> None:
    plain = Settings(data_dir=tmp_path)
    assert plain.media_base == "/media"
    assert plain.download_url("abc") == "/files/abc"
    public = plain.with_changes(public_url="https://upload.example.com/")
    assert public.media_base == "https://upload.example.com/media"
    assert public.download_url("abc") == "https://upload.example.com/files/abc"
    split = public.with_changes(media_public_url="https://media.example.com/media/")
    assert split.media_base == "https://media.example.com/media"
    assert split.download_url("abc") == "https://upload.example.com/files/abc"
    env = Settings.from_env(
        {"UPLOAD_PUBLIC_URL": "https://u.example", "MEDIA_PUBLIC_URL": "https://m.example/media"},
        dotenv=tmp_path / "none",
    )
    assert (env.public_url, env.media_base) == ("https://u.example", "https://m.example/media")


def test_published_urls_use_the_media_base(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_changes(
        public_url=f"https://{SERVICE}", media_public_url=f"https://{MEDIA}/media"
    )
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(b"\xff\xd8")
    publisher = make_publisher(settings)
    assert isinstance(publisher, LocalPublisher)
    urls = publisher.publish("up1", [(poster, "poster.jpg")], lambda p: None)
    assert urls == {"poster.jpg": f"https://{MEDIA}/media/up1/poster.jpg"}


async def publish_poster(settings: Settings, tmp_path: Path) -> None:
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(b"\xff\xd8jpeg")
    LocalPublisher(settings.media_dir).publish("up1", [(poster, "poster.jpg")], lambda p: None)


@pytest.mark.parametrize("behind_proxy", [False, True])
async def test_media_only_on_the_media_host_and_the_rest_only_elsewhere(
    settings: Settings, tmp_path: Path, make_token: Callable[..., str], behind_proxy: bool
) -> None:
    settings = settings.with_changes(
        public_url=f"https://{SERVICE}",
        media_public_url=f"https://{MEDIA}/media",
        media_access="public",
        behind_proxy=behind_proxy,
    )
    await publish_poster(settings, tmp_path)

    def on(host: str) -> dict[str, str]:
        if behind_proxy:  # the proxy's Host is its own; the name asked for is forwarded
            return {"Host": "10.0.0.5:8000", "X-Forwarded-Host": host}
        return {"Host": host}

    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with app_client(settings) as client:
        poster = "/media/up1/poster.jpg"
        assert (await client.get(poster, headers=on(MEDIA))).status_code == 200
        assert (await client.get(poster, headers=on(f"{MEDIA}:443"))).status_code == 200
        assert (await client.get(poster, headers=on(MEDIA.upper()))).status_code == 200
        assert (await client.get(poster, headers=on(SERVICE))).status_code == 404
        assert (await client.get(poster, headers=on("other.example.com"))).status_code == 404

        token = make_token()
        created = await client.post(
            "/files/",
            headers={
                **on(SERVICE),
                "Authorization": f"Bearer {token}",
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "3",
            },
        )
        assert created.status_code == 201
        upload_id = created.headers["location"].rsplit("/", 1)[-1]
        status = f"/v1/uploads/{upload_id}"
        assert (await client.get(status, headers={**on(SERVICE), **auth})).status_code == 200
        for path in (status, "/upload", "/metrics", f"/files/{upload_id}"):
            refused = await client.get(path, headers={**on(MEDIA), **auth})
            assert refused.status_code == 404, path
        on_media = await client.post(
            "/files/",
            headers={**on(MEDIA), "Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
        )
        assert on_media.status_code == 404
        for host in (SERVICE, MEDIA):  # a load balancer's health checks use either name
            assert (await client.get("/healthz", headers=on(host))).status_code == 200


async def test_no_split_when_media_share_the_service_host(
    settings: Settings, tmp_path: Path
) -> None:
    for media_public_url in (None, "/media", f"https://{SERVICE}/media"):
        shared = settings.with_changes(
            public_url=f"https://{SERVICE}",
            media_public_url=media_public_url,
            media_access="public",
        )
        await publish_poster(shared, tmp_path)
        async with app_client(shared) as client:
            response = await client.get("/media/up1/poster.jpg", headers={"Host": SERVICE})
            assert response.status_code == 200, media_public_url
            assert (await client.get("/healthz", headers={"Host": SERVICE})).status_code == 200
