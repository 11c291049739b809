"""Helpers of the signed-media tests: a `ready` upload with its outputs published."""

from __future__ import annotations

from pathlib import Path

from hls_helpers import FILES
from redis import Redis

from processors.publish import LocalPublisher
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore, new_record
from upload_service.core.store.base import UploadInfo

HOUR = 3600


def publish_ready_upload(settings: Settings, work: Path) -> str:
    """A `ready` upload with its outputs published, as the pipeline leaves it; its id.

    `work` is where the outputs are written before they are published.
    """
    upload_id = "signed-1"
    items = []
    for name, data in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
        items.append((work / name, name))
    urls = LocalPublisher(settings.media_dir, settings.media_base).publish(
        upload_id, items, lambda p: None
    )
    status = StatusStore(settings.status_dir, Redis.from_url(settings.redis_url))
    status.put(new_record(UploadInfo(id=upload_id, owner="user-1", length=9, offset=9)))
    status.update(
        upload_id,
        state="ready",
        outputs={
            "original": settings.download_url(upload_id),
            "hls": urls["hls/master.m3u8"],
            "poster": urls["poster.jpg"],
            "mp4": urls["video.mp4"],
            "renditions": [{"height": 360, "width": 640, "url": urls["hls/v0/index.m3u8"]}],
            "captions": [{"lang": "en", "format": "vtt", "url": urls["hls/subs_en.vtt"]}],
        },
    )
    return upload_id
