"""Signed playback of media published to a private B2 bucket.

Status URLs point at this server's `/media/{id}/{name}?exp&sig` whatever the
storage; `media.MediaEndpoint` checks the signature, then asks this source:

- a playlist is fetched from B2 (small; kept for PLAYLIST_TTL seconds) and
  served from here, its URIs rewritten: other playlists stay ours (relative,
  with the signed query), every other file becomes a direct B2 download URL
  carrying a download authorization, so segments go straight from B2 to the
  player;
- any other file is a 302 to that same kind of B2 URL.

A download authorization (`get_download_authorization`) covers the upload's
folder, `{B2_PREFIX}/{id}/`: one per upload per window (an hour, as for the
signed URLs), kept in memory, so one B2 call serves every request of an
upload for a window, and status polls never reach B2 at all. It lives for
the signed URLs' TTL plus a window: whatever was handed out in a window
still works for at least the TTL, a whole film's segments included.

Every b2sdk call blocks: it runs on the `run_remote` pool, never the event loop.
"""

from __future__ import annotations

import io
import posixpath
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from b2sdk.v2 import B2Api, Bucket
from b2sdk.v2.exception import FileNotPresent
from starlette.requests import Request
from starlette.responses import Response

from upload_service.core.b2client import authorized_api, download_base, media_folder, retrying
from upload_service.core.media_signing import WINDOW
from upload_service.core.playlists import is_relative, with_query
from upload_service.core.settings import Settings
from upload_service.core.threads import run_remote
from upload_service.http.media import SECURITY_HEADERS
from upload_service.http.media_files import PLAYLIST_MAX

PLAYLIST_TTL = 30.0
MEMO_SIZE = 4096
B2_LONGEST_AUTHORIZATION = 7 * 24 * 3600
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class B2Media:
    def __init__(
        self,
        api_factory: Callable[[], B2Api],
        bucket_name: str,
        prefix: str,
        public_url: str | None,
        url_ttl: int,
        attempts: int = 3,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_factory = api_factory
        self.bucket_name = bucket_name
        self.prefix = prefix
        self.public_url = public_url
        self.window = max(1, min(WINDOW, url_ttl))
        self.authorization_seconds = min(B2_LONGEST_AUTHORIZATION, url_ttl + self.window)
        self.attempts = attempts
        self.backoff = backoff
        self.clock = clock
        self._bucket: Bucket | None = None
        self._lock = threading.Lock()
        self._base = ""
        self._tokens: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._playlists: OrderedDict[str, tuple[float, bytes | None]] = OrderedDict()

    @classmethod
    def from_settings(
        cls, settings: Settings, api_factory: Callable[[], B2Api] | None = None
    ) -> B2Media:
        assert settings.b2_bucket
        return cls(
            api_factory=api_factory or (lambda: authorized_api(settings)),
            bucket_name=settings.b2_bucket,
            prefix=settings.b2_prefix,
            public_url=settings.b2_public_url,
            url_ttl=settings.media_url_ttl,
        )

    # -- MediaSource ----------------------------------------------------------

    async def playlist(self, upload_id: str, parts: list[str]) -> bytes | None:
        key = media_folder(self.prefix, upload_id) + "/".join(parts)
        cached = self._playlists.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        body = await run_remote(self._download_small, key)
        _remember(self._playlists, key, (self.clock() + PLAYLIST_TTL, body))
        return body

    async def file(
        self, request: Request, upload_id: str, parts: list[str], headers: dict[str, str]
    ) -> Response:
        # B2 answers a missing file with its own 404: no lookup here first.
        location = await self._direct_url(upload_id, "/".join(parts))
        return Response(
            status_code=302,
            headers={**SECURITY_HEADERS, "Location": location, "Cache-Control": "no-store"},
        )

    async def uri_mapper(
        self, upload_id: str, parts: list[str], query: str
    ) -> Callable[[str], str]:
        folder = media_folder(self.prefix, upload_id)
        here = posixpath.dirname("/".join(parts))
        token = await self._token(upload_id)
        base = self._base

        def mapped(uri: str) -> str:
            if not is_relative(uri):
                return uri
            path = uri.split("?", 1)[0]
            if path.lower().endswith(".m3u8"):
                return with_query(uri, query)  # another playlist: served (rewritten) here
            name = posixpath.normpath(posixpath.join(here, path))
            if name.startswith(("../", "/")) or name == "..":
                return uri  # outside the upload's folder: not ours to authorize
            return _authorized(base, folder + name, token)

        return mapped

    # -- B2 -------------------------------------------------------------------

    async def _direct_url(self, upload_id: str, name: str) -> str:
        token = await self._token(upload_id)
        return _authorized(self._base, media_folder(self.prefix, upload_id) + name, token)

    async def _token(self, upload_id: str) -> str:
        key = (upload_id, int(self.clock()) // self.window)
        token = self._tokens.get(key)
        if token is None:
            token = await run_remote(self._authorize, media_folder(self.prefix, upload_id))
            _remember(self._tokens, key, token)
        return token

    def _connect(self) -> Bucket:
        with self._lock:  # the first requests of a process arrive together
            if self._bucket is None:
                api = self._retry(self.api_factory)
                bucket = self._retry(lambda: api.get_bucket_by_name(self.bucket_name))
                self._base = download_base(api, self.bucket_name, self.public_url)
                self._bucket = bucket
            return self._bucket

    def _authorize(self, folder: str) -> str:
        bucket = self._connect()
        return self._retry(
            lambda: str(bucket.get_download_authorization(folder, self.authorization_seconds))
        )

    def _download_small(self, key: str) -> bytes | None:
        bucket = self._connect()

        def download() -> bytes | None:
            try:
                downloaded = bucket.download_file_by_name(key)
            except FileNotPresent:
                return None
            if downloaded.download_version.size > PLAYLIST_MAX:
                return None
            buffer = io.BytesIO()
            downloaded.save(buffer)
            return buffer.getvalue()

        return self._retry(download)

    def _retry(self, call: Callable[[], T]) -> T:
        return retrying(call, self.attempts, self.backoff, what="b2media")


def _authorized(base: str, key: str, token: str) -> str:
    return f"{base}/{quote(key)}?Authorization={quote(token, safe='')}"


def _remember(memo: OrderedDict[K, V], key: K, value: V) -> None:
    memo[key] = value
    if len(memo) > MEMO_SIZE:
        memo.popitem(last=False)
