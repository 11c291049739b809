"""Every error the service answers with: a stable code, an HTTP status, a message.

Handlers raise `ServiceError`s; `upload_service.http.app` turns them into JSON
responses in one place (`{"error": {"code": ..., "message": ...}}`). Anything
else is a 500, logged with the request id. docs/api.md lists every code.
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}


def _error(name: str, status: int, code: str, message: str) -> type[ServiceError]:
    return type(name, (ServiceError,), {"status": status, "code": code, "message": message})


# The tus protocol's errors (tus 1.0.0 status codes).
BadRequest = _error("BadRequest", 400, "bad_request", "bad request")
InvalidLength = _error(
    "InvalidLength", 400, "invalid_length", "Upload-Length must be a non-negative integer"
)
InvalidOffset = _error(
    "InvalidOffset", 400, "invalid_offset", "Upload-Offset must be a non-negative integer"
)
InvalidMetadata = _error("InvalidMetadata", 400, "invalid_metadata", "Upload-Metadata is malformed")
InvalidConcat = _error("InvalidConcat", 400, "invalid_concat", "Upload-Concat is malformed")
UnsupportedChecksum = _error(
    "UnsupportedChecksum", 400, "unsupported_checksum", "checksum algorithm not supported"
)
InvalidChecksum = _error("InvalidChecksum", 400, "invalid_checksum", "Upload-Checksum is malformed")
Unauthorized = _error("Unauthorized", 401, "unauthorized", "a valid upload token is required")
Forbidden = _error("Forbidden", 403, "forbidden", "not allowed")
# Signed media URLs (media_signing): a missing or wrong signature, or a past expiry.
BadSignature = _error(
    "BadSignature",
    403,
    "bad_signature",
    "this media URL is not signed, or not signed for this upload",
)
UrlExpired = _error(
    "UrlExpired",
    403,
    "url_expired",
    "this media URL has expired: read the upload's status again for fresh URLs",
)
NotFound = _error("NotFound", 404, "not_found", "upload not found")
MethodNotAllowed = _error("MethodNotAllowed", 405, "method_not_allowed", "method not allowed")
MismatchedOffset = _error(
    "MismatchedOffset", 409, "mismatched_offset", "Upload-Offset does not match the stored offset"
)
Gone = _error("Gone", 410, "gone", "upload expired")
UnsupportedVersion = _error(
    "UnsupportedVersion", 412, "unsupported_version", "Tus-Resumable must be 1.0.0"
)
TooLarge = _error("TooLarge", 413, "too_large", "upload exceeds the allowed size")
UnsupportedContentType = _error(
    "UnsupportedContentType",
    415,
    "unsupported_content_type",
    "PATCH requests need Content-Type: application/offset+octet-stream",
)
RequestTimeout = _error(
    "RequestTimeout", 408, "request_timeout", "the request body stalled; resume from HEAD's offset"
)
Locked = _error("Locked", 423, "locked", "another request is writing this upload; retry shortly")
ChecksumMismatchError = _error(
    "ChecksumMismatchError", 460, "checksum_mismatch", "the chunk's checksum did not match"
)
TooManyUploads = _error(
    "TooManyUploads",
    429,
    "too_many_uploads",
    "this user has too many unfinished uploads; finish or delete some first",
)
CreationRateLimited = _error(
    "CreationRateLimited",
    429,
    "creation_rate_limited",
    "this user creates uploads too fast; retry after the Retry-After delay",
)
# Answered by the HTTP protocol itself (http/head_limits.py), before any application code.
HeadersTooLarge = _error(
    "HeadersTooLarge",
    431,
    "headers_too_large",
    "the request's head is over the server's bounds",
)
Unavailable = _error("Unavailable", 503, "unavailable", "a dependency is unavailable")
InsufficientStorage = _error(
    "InsufficientStorage",
    507,
    "insufficient_storage",
    "the server's disk is full; the bytes already stored are kept, resume later",
)
