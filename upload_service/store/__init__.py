from .base import ChecksumMismatch, UploadGone, UploadInfo, UploadNotFound, UploadStore
from .local import LocalStore
from .memory import MemoryStore

__all__ = [
    "ChecksumMismatch",
    "LocalStore",
    "MemoryStore",
    "UploadGone",
    "UploadInfo",
    "UploadNotFound",
    "UploadStore",
]
