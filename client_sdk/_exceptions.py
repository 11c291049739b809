"""The SDK's exceptions: one tree, so callers catch as broadly or narrowly as they like.

    UploadError                 anything the SDK raises on purpose
    ├── Unauthorized            401: missing, expired or tampered token (or wrong API key)
    ├── TooLarge                413: the file is over the server's or the token's limit
    ├── Gone                    410: the upload was terminated or expired
    │   └── NotFound            404: no such upload for this caller (never created, already
    │                           swept, or another user's: the server does not say which)
    ├── ChecksumMismatch        460: a chunk arrived damaged, even after retries
    ├── ServerError             any other unexpected status (5xx after retries, 4xx)
    ├── NetworkError            connection refused, reset or timed out, after retries
    └── WaitTimeout             StatusClient.wait gave up before a final state

`ProcessingFailed` (a subclass of UploadError) is raised by `wait(..., raise_on_failure=True)`
when the pipeline reports `failed`.

An error the server explained carries its reason: `code` and `server_message` from
the service's error body `{"error": {"code", "message"}}`, and both appear in
`str(exc)`. HEAD requests have no body, so errors met there carry neither.

`NotFound` is a subclass of `Gone` because to a client both mean the same (this
upload cannot be continued: start a new one); `StatusClient.get` answers None for
a 404 rather than raising, as a lookup of a missing key would.
"""

from __future__ import annotations

import json


class UploadError(Exception):
    """Base class; `status` is the HTTP status when one was received."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        body: str | None = None,
        code: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.code = code  # the server's error code, e.g. "unauthorized", "too_large"
        self.server_message = server_message  # the server's own words


class Unauthorized(UploadError):
    pass


class TooLarge(UploadError):
    pass


class Gone(UploadError):
    pass


class NotFound(Gone):
    pass


class ChecksumMismatch(UploadError):
    pass


class ServerError(UploadError):
    pass


class NetworkError(UploadError):
    pass


class WaitTimeout(UploadError):
    pass


class ProcessingFailed(UploadError):
    pass


def server_reason(body: str | None) -> tuple[str | None, str | None]:
    """(code, message) from the service's error body, or (None, None)."""
    try:
        error = json.loads(body or "")["error"]
        code, message = error.get("code"), error.get("message")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, None
    return (code if isinstance(code, str) else None), (
        message if isinstance(message, str) else None
    )


def error_for_status(status: int, what: str, body: str | None = None) -> UploadError:
    """The exception that a final (non-retried) HTTP status stands for.

    `what` says what failed ("creating the upload failed"); the server's reason, if
    its body gave one, follows: "creating the upload failed: upload token expired
    (HTTP 401 unauthorized)".
    """
    kind: type[UploadError]
    if status == 401:
        kind = Unauthorized
    elif status == 413:
        kind = TooLarge
    elif status == 404:
        kind = NotFound
    elif status == 410:
        kind = Gone
    elif status == 460:
        kind = ChecksumMismatch
    else:
        kind = ServerError
    code, said = server_reason(body)
    text = f"{what}: {said}" if said else what
    text += f" (HTTP {status} {code})" if code else f" (HTTP {status})"
    return kind(text, status=status, body=body, code=code, server_message=said)
