"""Media URLs as a reader is given them: signed at that moment, in signed mode.

Status records keep plain URLs, on disk and in Redis: a signature expires,
a record does not. The status API (`body`) and webhook deliveries (`record`)
append the upload's signed query (`media_signing`) to every URL under
`{media_base}/{id}/` as they hand a record out. `outputs.original` is never
signed: it is `GET /files/{id}`, for the owner's token or the API key, and a
playback URL must never fetch the original.

Polling speed: a record without a media URL (anything not `ready`) is
recognised from its bytes and returned as it is; a `ready` one is parsed and
re-encoded once per expiry window, then served from a small memo.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from upload_service.core.media_signing import MediaSigner, media_signer
from upload_service.core.playlists import with_query
from upload_service.core.settings import Settings
from upload_service.core.status import Record, encode

MEMO_SIZE = 512


class PlaybackURLs:
    def __init__(self, media_base: str, signer: MediaSigner | None) -> None:
        self.media_base = media_base.rstrip("/")
        self.signer = signer
        # A media URL in a record's JSON begins so (json.dumps escapes nothing in it
        # but non-ASCII, which it escapes here the same way).
        self._marker = json.dumps(self.media_base + "/")[1:-1].encode()
        self._memo: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.time
    ) -> PlaybackURLs:
        """Raises MissingSigningKey in signed mode without a key to sign with."""
        return cls(settings.media_base, media_signer(settings, clock))

    def record(self, record: Record, now: float | None = None) -> Record:
        """A copy of `record` with its media URLs signed (the record itself in public mode)."""
        outputs = record.get("outputs")
        if self.signer is None or not outputs:
            return record
        prefix = f"{self.media_base}/{record['id']}/"
        query = self.signer.query(record["id"], now)
        signed = {
            key: value if key == "original" else _signed(value, prefix, query)
            for key, value in outputs.items()
        }
        return {**record, "outputs": signed}

    def body(self, body: bytes, now: float | None = None) -> bytes:
        """The encoded record `body`, its media URLs signed."""
        if self.signer is None or self._marker not in body:
            return body
        key = (self.signer.expiry(now), body)
        signed = self._memo.get(key)
        if signed is None:
            signed = encode(self.record(json.loads(body), now))
            self._memo[key] = signed
            if len(self._memo) > MEMO_SIZE:
                self._memo.popitem(last=False)
        return signed


def _signed(value: Any, prefix: str, query: str) -> Any:
    if isinstance(value, str):
        return with_query(value, query) if value.startswith(prefix) else value
    if isinstance(value, dict):
        return {k: _signed(v, prefix, query) for k, v in value.items()}
    if isinstance(value, list):
        return [_signed(v, prefix, query) for v in value]
    return value
