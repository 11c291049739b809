"""A finished piece made public, and the status record told what is public.

Each piece is published as soon as it is made, playlists after the segments
they list, so what is public is always playable. Publishing is checkpointed
apart from making (`published:<piece>`): a piece made but not yet published
when a worker died is only published by the redo.
"""

from __future__ import annotations

import logging

from upload_service.core.logs import log_event

from .job_parts import JobParts
from .outputs import build_outputs
from .transcode import VARIANT

log = logging.getLogger("processors.pieces")


def published_files(job: JobParts, folder: str) -> list[str]:
    """The published names under `folder`, playlists after the segments they list
    (a rung's own one-variant master left out: the job's master replaces it)."""
    names = [
        str(p.relative_to(job.out))
        for p in (job.out / folder).rglob("*")
        if p.is_file() and p.name != VARIANT
    ]
    return sorted(names, key=lambda name: (name.endswith(".m3u8"), name))


def publish_piece(job: JobParts, piece: str, names: list[str], force: bool = False) -> None:
    """Add `names` to what is public, in that order (a playlist after what it lists)."""
    key = f"published:{piece}"
    if not force and job.checkpoint.done(key):
        urls = job.checkpoint.get(key)
    else:
        items = [(job.out / name, name) for name in names]
        urls = job.publisher.add(job.upload_id, items, lambda _p: None)
        job.checkpoint.finish(key, urls)
    job.made.urls.update(urls)


def announce_playable(job: JobParts) -> None:
    """`playable` in the status, and `media.playable` the first time only."""
    record = job.status.write(
        state="playable",
        media=job.media.public(),
        outputs=build_outputs(job.made, job.original_url),
    )
    if not job.was_playable:  # a redo of a job that got this far says it once only
        job.emit_event("media.playable", record)
    log_event(log, "pipeline.playable", upload_id=job.upload_id)


def write_outputs(job: JobParts) -> None:
    job.status.write(outputs=build_outputs(job.made, job.original_url))
