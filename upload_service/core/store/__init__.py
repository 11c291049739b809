from upload_service.core.store.base import (
    ChecksumMismatch,
    UploadGone,
    UploadInfo,
    UploadNotFound,
    UploadStore,
)
from upload_service.core.store.local import LocalStore
from upload_service.core.store.memory import MemoryStore

__all__ = [
    "ChecksumMismatch",
    "LocalStore",
    "MemoryStore",
    "UploadGone",
    "UploadInfo",
    "UploadNotFound",
    "UploadStore",
]
