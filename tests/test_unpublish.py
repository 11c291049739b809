"""Publisher.unpublish: everything published for one upload gone, nothing else, idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from b2_helpers import FakeB2, make_fake_b2
from hls_helpers import FILES
from protocol_helpers import app_client

from processors.publish import LocalPublisher, PublishItem
from upload_service.core.ids import UnsafeId
from upload_service.core.settings import Settings

pytestmark = pytest.mark.one_path


def items(tmp_path: Path, upload_id: str) -> list[PublishItem]:
    found = []
    for name, data in FILES.items():
        path = tmp_path / "out" / upload_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        found.append((path, name))
    return found


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- local -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_local_unpublish_removes_the_upload_and_its_leftovers_only(
    settings: Settings, tmp_path: Path
) -> None:
    media = settings.media_dir
    publisher = LocalPublisher(media)
    for upload_id in ("up1", "up10", "up2"):
        publisher.publish(upload_id, items(tmp_path, upload_id), lambda p: None)
    # What a publish killed midway leaves beside the tree; another upload's too.
    for leftover in (".up1.staging", ".up1.old", ".up2.staging"):
        (media / leftover / "hls").mkdir(parents=True)
        (media / leftover / "hls" / "master.m3u8").write_bytes(b"#EXTM3U\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (media / "up1" / "linked").symlink_to(outside)
    before_others = {u: tree(media / u) for u in ("up10", "up2")}

    public = settings.with_changes(media_access="public")
    async with app_client(public) as client:
        assert (await client.get("/media/up1/poster.jpg")).status_code == 200
        publisher.unpublish("up1")
        assert (await client.get("/media/up1/poster.jpg")).status_code == 404
        assert (await client.get("/media/up2/poster.jpg")).status_code == 200

    assert sorted(p.name for p in media.iterdir()) == [".up2.staging", "up10", "up2"]
    assert {u: tree(media / u) for u in ("up10", "up2")} == before_others
    assert (outside / "keep.txt").read_text() == "keep"  # a link is removed, not followed
    publisher.unpublish("up1")  # again: nothing left, no error
    publisher.unpublish("never-published")
    assert sorted(p.name for p in media.iterdir()) == [".up2.staging", "up10", "up2"]


@pytest.mark.parametrize("upload_id", ["", "..", "../media", "up1/..", "/", "a\x00b"])
def test_unpublish_refuses_what_is_not_an_upload_id(
    settings: Settings, tmp_path: Path, upload_id: str
) -> None:
    publisher = LocalPublisher(settings.media_dir)
    publisher.publish("up1", items(tmp_path, "up1"), lambda p: None)
    with pytest.raises(UnsafeId):
        publisher.unpublish(upload_id)
    fake = make_fake_b2()
    with pytest.raises(UnsafeId):
        fake.publisher().unpublish(upload_id)
    assert tree(settings.media_dir / "up1")


# -- B2 --------------------------------------------------------------------------------------


def versions_under(fake: FakeB2, prefix: str) -> list[str]:
    """Every version, hide markers and unfinished large files included."""
    listed = [
        f"{v.file_name}:{v.action}"
        for v, _ in fake.bucket.ls(prefix, latest_only=False, recursive=True)
    ]
    unfinished = [f.file_name for f in fake.bucket.list_unfinished_large_files(prefix=prefix)]
    return sorted(listed + [f"{name}:unfinished" for name in unfinished])


def test_b2_unpublish_deletes_every_version_and_unfinished_file_of_the_upload(
    tmp_path: Path,
) -> None:
    fake = make_fake_b2()
    publisher = fake.publisher(prefix="media", keep_local=True)
    for upload_id in ("up1", "up10", "up2"):
        publisher.publish(upload_id, items(tmp_path, upload_id), lambda p: None)
    # Beyond a clean publish: an older version, a hidden file, a large file
    # left unfinished by a crash.
    fake.bucket.upload_bytes(b"older", "media/up1/poster.jpg")
    fake.bucket.upload_bytes(b"hidden", "media/up1/gone.txt")
    fake.bucket.hide_file("media/up1/gone.txt")
    fake.api.services.large_file.start_large_file(
        fake.bucket.id_, "media/up1/video.mp4", "video/mp4", {}
    )
    fake.api.services.large_file.start_large_file(
        fake.bucket.id_, "media/up10/video.mp4", "video/mp4", {}
    )
    assert len(versions_under(fake, "media/up1/")) > len(FILES)
    others = {u: versions_under(fake, f"media/{u}/") for u in ("up10", "up2")}

    publisher.unpublish("up1")

    assert versions_under(fake, "media/up1/") == []
    assert {u: versions_under(fake, f"media/{u}/") for u in ("up10", "up2")} == others
    publisher.unpublish("up1")  # again
    publisher.unpublish("never-published")
    assert versions_under(fake, "media/up1/") == []
    assert {u: versions_under(fake, f"media/{u}/") for u in ("up10", "up2")} == others


def test_b2_unpublish_retries_transient_errors(tmp_path: Path) -> None:
    from b2sdk.v2.exception import ServiceError

    fake = make_fake_b2()
    publisher = fake.publisher(prefix="media", keep_local=True)
    publisher.publish("up1", items(tmp_path, "up1"), lambda p: None)
    bucket = publisher.bucket
    original = bucket.delete_file_version
    failures = [ServiceError("503 service_unavailable")]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures:
            raise failures.pop()
        return original(*args, **kwargs)  # type: ignore[arg-type]

    bucket.delete_file_version = flaky  # type: ignore[method-assign]
    publisher.unpublish("up1")
    assert versions_under(fake, "media/up1/") == []
    assert fake.sleeps  # backed off once, then carried on
