"""Publishing outputs: where the finished files go and what URL each gets.

A publisher receives local files with their relative names (the layout under
`{upload id}/`) and returns each name's public URL. The local publisher is the
embedded default; B2 is chosen when its settings are present (`make_publisher`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from upload_service.core.ids import safe_child
from upload_service.core.settings import Settings

# (local file, relative name such as "hls/master.m3u8")
PublishItem = tuple[Path, str]
ProgressCallback = Callable[[float], None]  # percent 0..100


class Publisher(Protocol):
    def publish(
        self, upload_id: str, items: list[PublishItem], on_progress: ProgressCallback
    ) -> dict[str, str]:
        """Make every item public (idempotent: safe to run again); name -> URL."""
        ...

    def add(
        self, upload_id: str, items: list[PublishItem], on_progress: ProgressCallback
    ) -> dict[str, str]:
        """Make items public beside what already is, one by one in their order, each
        whole when it appears (a new name, or an old one replaced at once), and
        leave the local files in place; name -> URL. A playable upload is published
        so: its playlists after the segments they list, while players read them."""
        ...

    def unpublish(self, upload_id: str) -> None:
        """Remove everything published for the upload, however far a publish got.

        Idempotent: an upload never published, or already unpublished, is fine.
        """
        ...


class LocalPublisher:
    """Files under `<data>/media/<id>/`, served by the server at `/media/<id>/`."""

    def __init__(self, media_dir: Path, base_url: str = "/media") -> None:
        self.media_dir = Path(media_dir)
        self.base_url = base_url.rstrip("/")  # where /media is reached (MEDIA_PUBLIC_URL)

    def url(self, upload_id: str, name: str) -> str:
        return f"{self.base_url}/{upload_id}/{name}"

    def _dirs(self, upload_id: str) -> tuple[Path, Path, Path]:
        """The published tree, the one being built, and the one being replaced."""
        final = safe_child(self.media_dir, upload_id)
        return final, final.with_name(f".{upload_id}.staging"), final.with_name(f".{upload_id}.old")

    def publish(
        self, upload_id: str, items: list[PublishItem], on_progress: ProgressCallback
    ) -> dict[str, str]:
        total = sum(path.stat().st_size for path, _ in items) or 1
        done = 0
        # Build the whole tree beside the final one, then swap it in with one
        # rename: a reader never sees half a publication.
        final, staging, old = self._dirs(upload_id)
        shutil.rmtree(staging, ignore_errors=True)
        for path, name in items:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(path, target)
            done += path.stat().st_size
            on_progress(100.0 * done / total)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return {name: self.url(upload_id, name) for _, name in items}

    def add(
        self, upload_id: str, items: list[PublishItem], on_progress: ProgressCallback
    ) -> dict[str, str]:
        final = safe_child(self.media_dir, upload_id)
        for done, (path, name) in enumerate(items, start=1):
            target = final / name
            target.parent.mkdir(parents=True, exist_ok=True)
            # Linked (or copied) under a temp name, then renamed over the old one:
            # a player reading the name meanwhile gets the old file or the new, whole.
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(path, tmp)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, target)
            on_progress(100.0 * done / len(items))
        return {name: self.url(upload_id, name) for _, name in items}

    def unpublish(self, upload_id: str) -> None:
        # The staging and old trees too: a publish killed midway leaves them.
        for tree in self._dirs(upload_id):
            _remove_tree(tree)


def _remove_tree(path: Path) -> None:
    if path.is_symlink():  # never followed: only the link itself is ours
        path.unlink(missing_ok=True)
        return
    with contextlib.suppress(FileNotFoundError):  # already gone: nothing to undo
        shutil.rmtree(path)


def make_publisher(settings: Settings) -> Publisher:
    if settings.b2_enabled:
        from .b2 import B2Publisher  # b2sdk only where B2 is configured

        return B2Publisher.from_settings(settings)
    return LocalPublisher(settings.media_dir, settings.media_base)
