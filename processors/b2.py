"""Publishing to Backblaze B2 (or a B2-compatible endpoint) with b2sdk.

Layout: `{prefix}/{upload id}/{name}`. A publish is idempotent and resumable:

- at the start, unfinished large files under the upload's folder that cannot
  be resumed (another name or SHA-1) are cancelled, so a crash never leaves
  orphaned parts behind; matching ones are left for b2sdk to resume;
- a file already in the bucket with the same name, size and SHA-1 is skipped,
  and after an upload the older versions of that name are deleted: one object
  per name, however many times the publish ran;
- at the end, any unfinished large file left under the folder is cancelled.

Files larger than two parts go through the large-file API (b2sdk splits them
into parts of at least `part_size` and uploads them on its thread pool); the
rest are single uploads. b2sdk checks every SHA-1 we hand it. Transient errors
that survive b2sdk's own retries are retried here with exponential backoff.
Local copies are removed only after B2 confirmed every file.

The URLs a publish returns: with MEDIA_ACCESS=public the bucket's own (or
B2_PUBLIC_URL's); with MEDIA_ACCESS=signed the server's `/media` ones, and
the bucket should be private: the server checks each request's signature,
then sends the player on to B2 with a download authorization
(`upload_service.http.media_b2`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from urllib.parse import quote

from b2sdk.v2 import B2Api, Bucket, FileVersion

from upload_service.core.b2client import authorized_api, download_base, media_folder, retrying
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings

from .b2_files import FileListener, Planned, Progress, PublishItem, by_reference, stored_sha1

log = logging.getLogger("processors.b2")

MB = 1024 * 1024


class B2PublishError(RuntimeError):
    """B2 answered, but not with what we uploaded (size or SHA-1 differ)."""


# Replaceable by tests (b2sdk's RawSimulator) and by anything that needs its own set-up.
api_factory: Callable[[Settings], B2Api] = authorized_api


class B2Publisher:
    def __init__(
        self,
        api_factory: Callable[[], B2Api],
        bucket_name: str,
        prefix: str = "",
        public_url: str | None = None,
        served_at: str | None = None,
        part_size: int = 100 * MB,
        threads: int = 4,
        attempts: int = 5,
        backoff: float = 1.0,
        keep_local: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_factory = api_factory
        self.bucket_name = bucket_name
        self.prefix = prefix.strip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        # MEDIA_ACCESS=signed: the bucket is private and outputs are URLs of the
        # server's /media (MEDIA_PUBLIC_URL), which signs and redirects to B2.
        self.served_at = served_at.rstrip("/") if served_at is not None else None
        self.part_size = part_size
        self.threads = max(1, threads)
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.keep_local = keep_local
        self.sleep = sleep
        self._api: B2Api | None = None
        self._bucket: Bucket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> B2Publisher:
        assert settings.b2_bucket
        return cls(
            api_factory=lambda: api_factory(settings),
            bucket_name=settings.b2_bucket,
            prefix=settings.b2_prefix,
            public_url=settings.b2_public_url,
            served_at=settings.media_base if settings.media_access == "signed" else None,
            part_size=settings.b2_part_size,
            threads=settings.b2_upload_threads,
            keep_local=settings.keep_local,
        )

    # -- B2 handles -------------------------------------------------------

    @property
    def api(self) -> B2Api:
        self._connect()
        assert self._api is not None
        return self._api

    @property
    def bucket(self) -> Bucket:
        self._connect()
        assert self._bucket is not None
        return self._bucket

    def _connect(self) -> None:
        with self._lock:
            if self._bucket is None:
                api = retrying(self.api_factory, self.attempts, self.backoff, self.sleep, "auth")
                self._bucket = retrying(
                    lambda: api.get_bucket_by_name(self.bucket_name),
                    self.attempts,
                    self.backoff,
                    self.sleep,
                    "bucket",
                )
                self._api = api
                if self.served_at is not None and self._bucket.type_ == "allPublic":
                    # Signed URLs guard nothing if the bucket answers anyone.
                    log_event(log, "b2.bucket_public", logging.WARNING, bucket=self.bucket_name)

    def folder(self, upload_id: str) -> str:
        return media_folder(self.prefix, upload_id)

    def key(self, upload_id: str, name: str) -> str:
        return self.folder(upload_id) + name.lstrip("/")

    def url(self, upload_id: str, name: str) -> str:
        if self.served_at is not None:  # signed playback: through the server's /media
            return f"{self.served_at}/{upload_id}/{name}"
        base = download_base(self.api, self.bucket_name, self.public_url)
        return f"{base}/{quote(self.key(upload_id, name))}"

    # -- publishing -------------------------------------------------------

    def publish(
        self, upload_id: str, items: list[PublishItem], on_progress: Callable[[float], None]
    ) -> dict[str, str]:
        return self._publish(upload_id, items, on_progress, keep_local=self.keep_local)

    def add(
        self, upload_id: str, items: list[PublishItem], on_progress: Callable[[float], None]
    ) -> dict[str, str]:
        # Each B2 upload replaces its name at once, but files of one publish go up
        # side by side: so in groups, what names others (VTT, then playlists) after
        # what they name. The job still needs its local files (the MP4 is remuxed
        # from a rung, the storyboard read from one): they stay.
        urls: dict[str, str] = {}
        for group in by_reference(items):
            urls.update(self._publish(upload_id, group, on_progress, keep_local=True))
        return urls

    def _publish(
        self,
        upload_id: str,
        items: list[PublishItem],
        on_progress: Callable[[float], None],
        keep_local: bool,
    ) -> dict[str, str]:
        started = time.monotonic()
        planned = [Planned.of(path, name, self.key(upload_id, name)) for path, name in items]
        folder = self.folder(upload_id)
        self._cancel_unfinished(folder, keep={(p.key, p.sha1) for p in planned})
        existing = self._versions(folder)
        progress = Progress(sum(p.size for p in planned), on_progress)

        todo: list[Planned] = []
        for item in planned:
            versions = existing.get(item.key, [])
            if versions and item.is_stored_as(versions[0]):
                progress.set(item.key, item.size)
                self._delete_versions(versions[1:])
            else:
                todo.append(item)
        uploaded = self._upload_all(todo, existing, progress)

        # Anything still unfinished under the folder is ours and now useless.
        self._cancel_unfinished(folder, keep=set())
        progress.finish()
        if not keep_local:
            self._remove_local(planned)
        log_event(
            log,
            "b2.published",
            upload_id=upload_id,
            files=len(planned),
            uploaded=uploaded,
            bytes=sum(p.size for p in todo),
            seconds=round(time.monotonic() - started, 3),
        )
        return {p.name: self.url(upload_id, p.name) for p in planned}

    def unpublish(self, upload_id: str) -> None:
        """Delete every file version under the upload's folder and cancel its
        unfinished large files (a publish that died midway leaves those)."""
        folder = self.folder(upload_id)
        self._cancel_unfinished(folder, keep=set())

        def listing() -> list[FileVersion]:
            # Every version, hidden ones and their hide markers included.
            return [
                v
                for v, _ in self.bucket.ls(folder, latest_only=False, recursive=True)
                if v.action != "start"
            ]

        versions = retrying(listing, self.attempts, self.backoff, self.sleep, "list")
        self._delete_versions(versions)
        log_event(log, "b2.unpublished", upload_id=upload_id, versions=len(versions))

    def _upload_all(
        self,
        todo: list[Planned],
        existing: dict[str, list[FileVersion]],
        progress: Progress,
    ) -> int:
        if not todo:
            return 0
        # Small files (HLS segments) are latency-bound: several at once. Large
        # ones also spread their parts over b2sdk's own upload pool.
        failed = threading.Event()

        def task(item: Planned) -> None:
            if failed.is_set():  # one file failed: the publish fails, start no more
                return
            try:
                self._upload_one(item, existing.get(item.key, []), progress)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(min(self.threads, len(todo)), "b2-publish") as pool:
            futures: list[Future[None]] = [pool.submit(task, item) for item in todo]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
        return len(todo)

    def _upload_one(self, item: Planned, old: list[FileVersion], progress: Progress) -> None:
        min_part = max(self.part_size, self.api.account_info.get_absolute_minimum_part_size())

        def upload() -> FileVersion:
            progress.set(item.key, 0)
            return self.bucket.upload_local_file(
                str(item.path),
                item.key,
                content_type=item.content_type,
                sha1_sum=item.sha1,  # b2sdk sends it; B2 rejects a mismatch
                min_part_size=min_part,
                progress_listener=FileListener(progress, item.key),
            )

        version = retrying(upload, self.attempts, self.backoff, self.sleep, item.key)
        if version.size != item.size or stored_sha1(version) != item.sha1:
            raise B2PublishError(
                f"B2 stored {item.key} as {version.size} bytes, "
                f"sha1 {stored_sha1(version)}; expected {item.size}, {item.sha1}"
            )
        progress.set(item.key, item.size)
        self._delete_versions([v for v in old if v.id_ != version.id_])

    def _versions(self, folder: str) -> dict[str, list[FileVersion]]:
        """Every version under the folder, newest first per name."""

        def listing() -> dict[str, list[FileVersion]]:
            found: dict[str, list[FileVersion]] = {}
            for version, _ in self.bucket.ls(folder, latest_only=False, recursive=True):
                if version.action != "start":  # unfinished large files: see the sweeps
                    found.setdefault(version.file_name, []).append(version)
            return found

        return retrying(listing, self.attempts, self.backoff, self.sleep, "list")

    def _delete_versions(self, versions: list[FileVersion]) -> None:
        for v in versions:
            retrying(
                lambda v=v: self.bucket.delete_file_version(v.id_, v.file_name),  # type: ignore[misc]
                self.attempts,
                self.backoff,
                self.sleep,
                "delete",
            )

    def _cancel_unfinished(self, folder: str, keep: set[tuple[str, str]]) -> None:
        def sweep() -> None:
            for unfinished in list(self.bucket.list_unfinished_large_files(prefix=folder)):
                sha1 = (unfinished.file_info or {}).get("large_file_sha1")
                if (unfinished.file_name, sha1) in keep:
                    keep.discard((unfinished.file_name, sha1))  # resume one, not two
                    continue
                self.bucket.cancel_large_file(unfinished.file_id)
                log_event(log, "b2.cancelled_unfinished", file_name=unfinished.file_name)

        retrying(sweep, self.attempts, self.backoff, self.sleep, "unfinished")

    def _remove_local(self, planned: list[Planned]) -> None:
        # The job's own outputs only: the pipeline never hands over the tus store's files.
        for item in planned:
            item.path.unlink(missing_ok=True)
