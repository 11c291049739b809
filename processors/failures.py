"""The two kinds of pipeline failure, told apart by type.

    Exception
    ├── MediaError          permanent: the file itself is the problem; never retried,
    │   ├── UnsupportedMedia    ends `failed` with code `unsupported_media`
    │   └── CorruptMedia        ends `failed` with code `corrupt_media`
    └── TransientError      anything worth another attempt (a crash, a full disk, a
                            time-out, a publisher hiccup): retried with backoff by
                            Dramatiq; when retries run out, `failed` with
                            `processing_failed`

Any other exception counts as transient too: a bug may be a passing one, and
retries are bounded.
"""

from __future__ import annotations


class MediaError(Exception):
    code = "media_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedMedia(MediaError):
    code = "unsupported_media"


class CorruptMedia(MediaError):
    code = "corrupt_media"


class TransientError(Exception):
    pass


class FfmpegFailed(TransientError):
    """ffmpeg exited non-zero on input that probed and decoded fine."""


class FfmpegTimeout(TransientError):
    """ffmpeg ran past the time limit derived from the media's duration."""
