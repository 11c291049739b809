"""Resumable uploads over tus, built on tuspy's uploader.

tuspy gives the protocol basics (metadata encoding, creation headers, URL storage
and fingerprint interfaces); this module adds what a long upload over a bad
network needs: chunks streamed from disk instead of read into memory, progress
inside a chunk, retries with backoff, a checksum per chunk when the server
offers one, resumption from a JSON file of upload URLs, and exceptions that say
what went wrong.
"""

from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import requests
from tusclient.client import TusClient
from tusclient.storage.interface import Storage
from tusclient.uploader import Uploader as TusUploader

from ._exceptions import Gone, NetworkError, UploadError, error_for_status
from ._resume import JSONURLStore, SampleFingerprint
from ._retry import RETRY_STATUSES, RetryPolicy

ProgressCallback = Callable[[int, int], None]
MIB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 8 * MIB
BLOCK = 64 * 1024
CHECKSUM_PREFERENCE = ("sha256", "sha1")
NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class UploadResult:
    url: str
    id: str
    size: int
    # Where this run started: > 0 when it continued an earlier, interrupted one.
    started_at: int

    @property
    def resumed(self) -> bool:
        return self.started_at > 0


class _Region(io.RawIOBase):
    """Bytes [start, start+length) of a file, read lazily, reporting each block sent.

    requests sees `__len__` and sends a Content-Length, then streams by `read()`, so
    a chunk never sits in memory whole.
    """

    def __init__(self, stream: IO[bytes], start: int, length: int, sent: Callable[[int], None]):
        self.stream, self.start, self.length, self.sent = stream, start, length, sent
        self.position = 0

    def __len__(self) -> int:
        return self.length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        remaining = self.length - self.position
        if remaining <= 0:
            return b""
        size = remaining if size is None or size < 0 else min(size, remaining)
        self.stream.seek(self.start + self.position)
        data = self.stream.read(size)
        self.position += len(data)
        if data:
            self.sent(self.start + self.position)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK):
            yield block


class _TusFile(TusUploader):
    """tuspy's uploader with a session, timeouts and a streamed, checksummed PATCH."""

    def __init__(self, session: requests.Session, timeout: float, checksum: str | None, **kw: Any):
        if checksum:
            self.CHECKSUM_ALGORITHM_PAIR = (checksum, getattr(hashlib, checksum))
        super().__init__(upload_checksum=bool(checksum), **kw)
        self.session = session
        self.timeout = timeout
        self.endpoint: str = kw["client"].url
        self.location: str | None = None  # tuspy's `url`, typed

    @property
    def where(self) -> str:
        assert self.location is not None, "no upload URL yet"
        return self.location

    def create_url(self) -> str:
        resp = self.session.post(
            self.endpoint, headers=self.get_url_creation_headers(), timeout=self.timeout
        )
        location = resp.headers.get("location")
        if resp.status_code != 201 or not location:
            raise _status_error(resp, "creating the upload failed")
        return urljoin(self.endpoint, location)

    def get_offset(self) -> int:
        resp = self.session.head(self.where, headers=self.get_headers(), timeout=self.timeout)
        offset = resp.headers.get("upload-offset")
        if resp.status_code != 200 or offset is None:
            raise _status_error(resp, "reading the upload's offset failed")
        return int(offset)

    def _digest(self, stream: IO[bytes], start: int, length: int) -> str:
        hasher = self.checksum_algorithm()
        stream.seek(start)
        left = length
        while left > 0:
            block = stream.read(min(BLOCK, left))
            if not block:
                break
            hasher.update(block)
            left -= len(block)
        return f"{self.checksum_algorithm_name} {base64.b64encode(hasher.digest()).decode()}"

    def send_chunk(self, stream: IO[bytes], sent: Callable[[int], None]) -> None:
        length = self.get_request_length()
        headers = {
            **self.get_headers(),
            "Upload-Offset": str(self.offset),
            "Content-Type": "application/offset+octet-stream",
        }
        if self.upload_checksum:
            headers["Upload-Checksum"] = self._digest(stream, self.offset, length)
        body = _Region(stream, self.offset, length, sent)
        resp = self.session.patch(self.where, data=body, headers=headers, timeout=self.timeout)
        new_offset = resp.headers.get("upload-offset")
        if resp.status_code != 204 or new_offset is None:
            raise _status_error(resp, "sending a chunk failed")
        self.offset = int(new_offset)


class _StatusFailure(UploadError):
    """An HTTP status, before the retry loop decides whether it is final."""


def _status_error(resp: requests.Response, what: str) -> _StatusFailure:
    return _StatusFailure(what, status=resp.status_code, body=resp.text[:500])


class Uploader:
    """Uploads files to the service's tus endpoint, resuming where they stopped.

    >>> up = Uploader("https://upload.example.com", token)
    >>> up.upload("lecture.mp4", metadata={"filename": "lecture.mp4"},
    ...           on_progress=lambda sent, total: print(sent, total))
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        resume: bool = True,
        store: Storage | str | os.PathLike[str] | None = None,
        retry: RetryPolicy | None = None,
        checksum: str | None = "auto",
        timeout: float = 60.0,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.endpoint = _endpoint(server)
        self.client = TusClient(self.endpoint, headers={"Authorization": f"Bearer {token}"})
        self.chunk_size = chunk_size
        self.store: Storage | None = None
        if resume:
            self.store = store if isinstance(store, Storage) else JSONURLStore(store)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.session = requests.Session()
        self._checksum_choice = checksum
        self._checksum: str | None | bool = False  # False: not decided yet

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server's capabilities ---------------------------------------------
    def checksum_algorithm(self) -> str | None:
        """The algorithm for Upload-Checksum, if the server's OPTIONS offers one we know."""
        if isinstance(self._checksum, str) or self._checksum is None:
            return self._checksum
        choice = self._checksum_choice
        if choice in (None, "none"):
            self._checksum = None
        elif choice != "auto":
            self._checksum = choice
        else:
            resp = self._call(lambda: self.session.options(self.endpoint, timeout=self.timeout))
            extensions = _csv(resp.headers.get("tus-extension"))
            offered = _csv(resp.headers.get("tus-checksum-algorithm"))
            usable = [a for a in CHECKSUM_PREFERENCE if a in offered]
            self._checksum = usable[0] if "checksum" in extensions and usable else None
        return self._checksum if isinstance(self._checksum, str) else None

    # -- uploading -------------------------------------------------------------
    def upload(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
        url: str | None = None,
        stop_at: int | None = None,
    ) -> UploadResult:
        """Upload `file` (a path or a seekable binary file object) and return where it is.

        With resumption on, an earlier unfinished upload of the same content to the
        same server continues from the server's offset. `url` resumes a known upload
        explicitly (Gone if it no longer exists). `stop_at` stops after that many
        bytes, leaving the upload resumable.
        """
        if isinstance(file, str | os.PathLike):
            path = Path(file)
            meta = {"filename": path.name, **(metadata or {})}
            guessed, _ = mimetypes.guess_type(path.name)
            if guessed and "filetype" not in meta:
                meta["filetype"] = guessed
            with open(path, "rb") as stream:
                return self._upload(stream, meta, on_progress, url, stop_at)
        return self._upload(file, dict(metadata or {}), on_progress, url, stop_at)

    def _upload(
        self,
        stream: IO[bytes],
        metadata: dict[str, str],
        on_progress: ProgressCallback | None,
        url: str | None,
        stop_at: int | None,
    ) -> UploadResult:
        tus = _TusFile(
            self.session,
            self.timeout,
            self.checksum_algorithm(),
            file_stream=stream,
            client=self.client,
            chunk_size=self.chunk_size,
            metadata=metadata,
        )
        size = tus.get_file_size()
        key = SampleFingerprint(self.endpoint).get_fingerprint(stream) if self.store else None
        if url is not None:
            tus.location = url
            tus.offset = self._call(tus.get_offset)
        elif key is not None and self.store is not None:
            self._resume_stored(tus, key)
        if tus.location is None:
            tus.location = self._call(tus.create_url)
            tus.offset = 0
            if key is not None and self.store is not None:
                self.store.set_item(key, tus.where)
        started_at = tus.offset
        progress = _Monotonic(on_progress, size)
        progress(tus.offset)
        tus.stop_at = size if stop_at is None else min(size, stop_at)
        try:
            while tus.offset < tus.stop_at:
                self._send_with_retries(tus, stream, progress)
        except Gone:
            if key is not None and self.store is not None:
                self.store.remove_item(key)
            raise
        if tus.offset >= size and key is not None and self.store is not None:
            self.store.remove_item(key)  # finished: a later run starts a new upload
        return UploadResult(
            url=tus.where,
            id=tus.where.rstrip("/").rsplit("/", 1)[-1],
            size=size,
            started_at=started_at,
        )

    def _resume_stored(self, tus: _TusFile, key: str) -> None:
        assert self.store is not None
        stored = self.store.get_item(key)
        if not stored:
            return
        tus.location = stored
        try:
            tus.offset = self._call(tus.get_offset)
        except Gone:
            # Terminated, expired, or another user's: start afresh, as tus-js-client does.
            self.store.remove_item(key)
            tus.location = None

    def _send_with_retries(self, tus: _TusFile, stream: IO[bytes], progress: _Monotonic) -> None:
        def resync() -> None:
            # The server may hold part of the failed chunk: ask where it stands.
            tus.offset = self._call(tus.get_offset)

        self._call(lambda: tus.send_chunk(stream, progress), before_retry=resync)

    def _call(self, fn: Callable[[], Any], before_retry: Callable[[], None] | None = None) -> Any:
        """Run one request, retrying transient failures, mapping final ones."""
        attempt = 0
        while True:
            try:
                return fn()
            except NETWORK_ERRORS as exc:
                if attempt >= self.retry.retries:
                    raise NetworkError(f"cannot reach {self.endpoint}: {exc}") from exc
            except _StatusFailure as exc:
                assert exc.status is not None
                if exc.status not in RETRY_STATUSES or attempt >= self.retry.retries:
                    raise error_for_status(exc.status, exc.message, exc.body) from None
            self.retry.sleep(attempt)
            attempt += 1
            if before_retry is not None:
                before_retry()

    def terminate(self, url: str) -> None:
        """Delete an upload (tus termination); Gone if it is already gone."""
        resp = self._call(
            lambda: self.session.delete(
                url, headers={**self.client.headers, "Tus-Resumable": "1.0.0"}, timeout=self.timeout
            )
        )
        if resp.status_code != 204:
            raise error_for_status(resp.status_code, "terminating the upload failed", resp.text)


class _Monotonic:
    """Calls on_progress(sent, total) only with rising values: a retried chunk
    resends bytes already reported, and a progress bar must not jump back."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback, self.total, self.high = callback, total, -1

    def __call__(self, sent: int) -> None:
        if self.callback is not None and sent > self.high:
            self.high = sent
            self.callback(sent, self.total)


def _endpoint(server: str) -> str:
    server = server.rstrip("/")
    return server + "/" if server.endswith("/files") else server + "/files/"


def _csv(value: str | None) -> list[str]:
    return [part.strip().lower() for part in (value or "").split(",") if part.strip()]
