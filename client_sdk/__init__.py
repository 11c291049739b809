"""Client SDK of the media upload service: uploads, status, tokens, webhooks.

Installs on its own (tuspy, httpx, pyjwt) and imports nothing from the service.
"""

from ._exceptions import (
    ChecksumMismatch,
    Gone,
    NetworkError,
    NotFound,
    ProcessingFailed,
    ServerError,
    TooLarge,
    Unauthorized,
    UploadError,
    WaitTimeout,
)
from ._resume import JSONURLStore, SampleFingerprint, default_cache_dir
from ._retry import RetryPolicy
from ._status import FINAL_STATES, PLAYABLE_STATES, StatusClient, describe_progress
from ._tokens import mint_upload_token
from ._uploader import Uploader, UploadResult
from .webhooks import (
    InvalidPayloadError,
    InvalidSignatureError,
    InvalidTimestampError,
    MissingHeadersError,
    WebhookVerificationError,
    verify_webhook,
)

__all__ = [
    "FINAL_STATES",
    "PLAYABLE_STATES",
    "ChecksumMismatch",
    "Gone",
    "JSONURLStore",
    "NetworkError",
    "NotFound",
    "ProcessingFailed",
    "RetryPolicy",
    "SampleFingerprint",
    "ServerError",
    "StatusClient",
    "TooLarge",
    "Unauthorized",
    "UploadError",
    "UploadResult",
    "Uploader",
    "WaitTimeout",
    "default_cache_dir",
    "mint_upload_token",
    "InvalidPayloadError",
    "InvalidSignatureError",
    "InvalidTimestampError",
    "MissingHeadersError",
    "WebhookVerificationError",
    "describe_progress",
    "verify_webhook",
]
