"""b2sdk set-up and retries shared by the B2 publisher and the B2 upload store.

b2sdk retries each HTTP call and each upload a few times by itself, without
waiting in between for uploads. What survives that (MaxRetriesExceeded, a 429
that b2sdk does not retry on uploads, a timeout) is retried here with growing
delays, honouring Retry-After.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from b2sdk.v2 import B2Api, InMemoryAccountInfo
from b2sdk.v2.exception import (
    B2ConnectionError,
    B2Error,
    B2RequestTimeout,
    MaxRetriesExceeded,
    ServiceError,
    TooManyRequests,
)

from upload_service.core.ids import UnsafeId, is_safe_id
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings

log = logging.getLogger("upload_service.b2")
T = TypeVar("T")
DEFAULT_TYPE = "application/octet-stream"
_MIME = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$", re.ASCII)


def original_content_type(declared: str | None) -> str:
    """A client's declared `filetype`, if it looks like a MIME type (B2 rejects junk)."""
    if declared and _MIME.match(declared.strip()):
        return declared.strip().lower()
    return DEFAULT_TYPE


def is_transient(exc: BaseException) -> bool:
    """Worth another try later: 5xx, 429, timeouts, broken connections."""
    if isinstance(
        exc,
        MaxRetriesExceeded
        | ServiceError
        | TooManyRequests
        | B2ConnectionError
        | B2RequestTimeout
        | ConnectionError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, B2Error):
        return bool(exc.should_retry_upload() or exc.should_retry_http())
    return False


def retrying(
    call: Callable[[], T],
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "",
) -> T:
    """Run `call`; on a transient error wait backoff * 2**n (with jitter) and again."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = min(backoff * 2 ** (attempt - 1), 60.0) * random.uniform(0.8, 1.2)
            # A 429 or 503 may say how long to stay away (Retry-After): obey it.
            delay = max(delay, getattr(exc, "retry_after_seconds", None) or 0)
            log_event(
                log,
                "b2.retry",
                what=what,
                attempt=attempt,
                delay=round(delay, 3),
                error=type(exc).__name__,
            )
            sleep(delay)
    raise AssertionError("unreachable")


def media_folder(prefix: str, upload_id: str) -> str:
    """Where an upload's published files are in the bucket: `{B2_PREFIX}/{id}/`."""
    if not is_safe_id(upload_id):  # a folder is listed, authorized and deleted whole
        raise UnsafeId(f"not an upload id: {upload_id!r}")
    prefix = prefix.strip("/")
    return f"{prefix}/{upload_id}/" if prefix else f"{upload_id}/"


def download_base(api: B2Api, bucket_name: str, public_url: str | None) -> str:
    """What a file's key is appended to for its download URL: B2_PUBLIC_URL (a CDN in
    front of the bucket), else the account's download URL for the bucket."""
    if public_url:
        return public_url.rstrip("/")
    return f"{api.account_info.get_download_url().rstrip('/')}/file/{quote(bucket_name)}"


def authorized_api(settings: Settings) -> B2Api:
    """The real thing: `realm` is "production" or a URL of a B2-compatible endpoint."""
    api = B2Api(InMemoryAccountInfo(), max_upload_workers=settings.b2_upload_threads)
    api.authorize_account(settings.b2_realm, settings.b2_key_id, settings.b2_key)
    return api
