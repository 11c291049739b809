"""One upload's objects in a B2 bucket: where they are, how they are read and removed.

    {root}{id}/info   the UploadInfo as JSON (never the offset)
    {root}{id}/data   the bytes: an unfinished large file while uploading,
                      a plain B2 file once the upload is complete
    {root}{id}/tail   bytes that arrived but are too few for a part yet

`B2Objects` reads the whole of an upload's state in one listing (plus the
parts of its unfinished large file) and is the B2 plumbing under `B2Store`:
everything here runs in worker threads, with b2sdk's calls retried.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from b2sdk.v2 import B2Api, Bucket
from b2sdk.v2.exception import FileNotPresent

from upload_service.core.b2client import original_content_type, retrying
from upload_service.core.store.base import UploadGone, UploadInfo, UploadNotFound, is_safe_id

MB = 1024 * 1024
READ_BLOCK = 1024 * 1024


@dataclass
class B2State:
    """What B2 holds for one upload, read in one listing (+ list_parts)."""

    info: UploadInfo
    finished_size: int | None = None  # the data object, once complete
    large_file_id: str | None = None
    parts: list[tuple[int, str]] = field(default_factory=list)  # (size, sha1) by number
    tail_size: int = 0
    stale: list[Any] = field(default_factory=list)  # versions to delete

    @property
    def offset(self) -> int:
        if self.finished_size is not None:
            return self.finished_size
        return sum(size for size, _ in self.parts) + self.tail_size


class B2Objects:
    def __init__(
        self,
        api_factory: Callable[[], B2Api],
        bucket_name: str,
        prefix: str = "uploads",
        part_size: int = 100 * MB,
        spool_dir: str | None = None,
        attempts: int = 5,
        backoff: float = 1.0,
    ) -> None:
        self.api_factory = api_factory
        self.bucket_name = bucket_name
        self.root = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.spool_dir = spool_dir
        self.attempts = attempts
        self.backoff = backoff
        self._api: B2Api | None = None
        self._bucket: Bucket | None = None

    def _b2(self) -> tuple[B2Api, Bucket]:
        if self._bucket is None:
            api = self._retry(self.api_factory)
            self._bucket = self._retry(lambda: api.get_bucket_by_name(self.bucket_name))
            self._api = api
            # B2's minimum part size is the floor, whatever was configured.
            self.part_size = max(self.part_size, api.account_info.get_absolute_minimum_part_size())
        assert self._api is not None
        return self._api, self._bucket

    def _retry(self, call: Callable[[], Any]) -> Any:
        return retrying(call, self.attempts, self.backoff, what="b2store")

    def _folder(self, upload_id: str) -> str:
        if not is_safe_id(upload_id):
            raise UploadNotFound(upload_id)
        return f"{self.root}{upload_id}/"

    def _read_state(self, upload_id: str, allow_expired: bool = False) -> B2State:
        api, bucket = self._b2()
        folder = self._folder(upload_id)
        versions: dict[str, list[Any]] = {}
        listing = self._retry(lambda: list(bucket.ls(folder, latest_only=False)))
        for version, _ in listing:
            versions.setdefault(version.file_name.removeprefix(folder), []).append(version)
        infos = [v for v in versions.get("info", []) if v.action == "upload"]
        if not infos:
            raise UploadNotFound(upload_id)
        info = UploadInfo.from_json(json.loads(self._download(infos[0].file_name)))
        if info.expired and not allow_expired:
            raise UploadGone(upload_id)
        state = B2State(info=info, stale=infos[1:])
        timestamps = [infos[0].upload_timestamp]
        for version in versions.get("data", []):
            if version.action == "upload" and state.finished_size is None:
                state.finished_size = version.size
                timestamps.append(version.upload_timestamp)
            elif version.action == "start" and state.large_file_id is None:
                state.large_file_id = version.id_
            else:
                state.stale.append(version)
        if state.finished_size is None and state.large_file_id is not None:
            lf = api.services.large_file
            parts = self._retry(lambda: list(lf.list_parts(state.large_file_id)))
            for part in sorted(parts, key=lambda p: p.part_number):
                if part.part_number != len(state.parts) + 1:
                    break  # only a gapless run of parts counts
                state.parts.append((part.content_length, part.content_sha1))
        tails = [v for v in versions.get("tail", []) if v.action == "upload"]
        for tail in tails:
            follows = (tail.file_info or {}).get("parts")
            current = state.finished_size is None and not state.tail_size
            if current and follows == str(len(state.parts)):
                state.tail_size = tail.size
                timestamps.append(tail.upload_timestamp)
                continue
            state.stale.append(tail)
        info.offset = state.offset
        info.updated_at = max(info.updated_at, max(timestamps) / 1000)
        return state

    def _download(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        _, bucket = self._b2()
        chunks: list[bytes] = []

        def fetch() -> None:
            chunks.clear()
            range_ = (start, end - 1) if start is not None and end is not None else None
            downloaded = bucket.download_file_by_name(name, range_=range_)
            chunks.extend(downloaded.response.iter_content(READ_BLOCK))

        self._retry(fetch)
        return b"".join(chunks)

    def _delete(self, versions: list[Any]) -> None:
        _, bucket = self._b2()
        for v in versions:
            with contextlib.suppress(FileNotPresent):
                self._delete_one(bucket, v)

    def _delete_one(self, bucket: Bucket, version: Any) -> None:
        if version.action == "start":  # an unfinished large file: cancel it
            self._retry(lambda: bucket.cancel_large_file(version.id_))
        else:
            self._retry(lambda: bucket.delete_file_version(version.id_, version.file_name))

    def _put_info(self, info: UploadInfo) -> None:
        _, bucket = self._b2()
        record = info.to_json() | {"offset": 0, "updated_at": time.time()}
        body = json.dumps(record, separators=(",", ":")).encode()
        name = self._folder(info.id) + "info"
        self._retry(lambda: bucket.upload_bytes(body, name, content_type="application/json"))

    def _content_type(self, info: UploadInfo) -> str:
        return original_content_type(info.metadata.get("filetype"))

    def _tail_versions(self, upload_id: str) -> list[Any]:
        _, bucket = self._b2()
        name = self._folder(upload_id) + "tail"
        return self._retry(lambda: list(bucket.list_file_versions(name)))

    def _stream(self, name: str, start: int, end: int) -> Iterator[bytes]:
        _, bucket = self._b2()
        downloaded = self._retry(
            lambda: bucket.download_file_by_name(name, range_=(start, end - 1))
        )
        return iter(downloaded.response.iter_content(READ_BLOCK))
