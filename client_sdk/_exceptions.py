"""The SDK's exceptions: one tree, so callers catch as broadly or narrowly as they like.

    UploadError                 anything the SDK raises on purpose
    ├── Unauthorized            401: missing, expired or tampered token (or wrong API key)
    ├── TooLarge                413: the file is over the server's or the token's limit
    ├── Gone                    404/410: the upload was terminated, expired or never ours
    ├── ChecksumMismatch        460: a chunk arrived damaged, even after retries
    ├── ServerError             any other unexpected status (5xx after retries, 4xx)
    ├── NetworkError            connection refused, reset or timed out, after retries
    └── WaitTimeout             StatusClient.wait gave up before a final state

`ProcessingFailed` (a subclass of UploadError) is raised by `wait(..., raise_on_failure=True)`
when the pipeline reports `failed`.
"""

from __future__ import annotations


class UploadError(Exception):
    """Base class; `status` is the HTTP status when one was received."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class Unauthorized(UploadError):
    pass


class TooLarge(UploadError):
    pass


class Gone(UploadError):
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


def error_for_status(status: int, message: str, body: str | None = None) -> UploadError:
    """The exception that a final (non-retried) HTTP status stands for."""
    kind: type[UploadError]
    if status == 401:
        kind = Unauthorized
    elif status == 413:
        kind = TooLarge
    elif status in (404, 410):
        kind = Gone
    elif status == 460:
        kind = ChecksumMismatch
    else:
        kind = ServerError
    return kind(f"{message} (HTTP {status})", status=status, body=body)
