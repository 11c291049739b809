"""The two kinds of pipeline failure, told apart by type.

    Exception
    ├── MediaError          permanent: the file itself is the problem; never retried,
    │   ├── UnsupportedMedia    `unsupported_media`: not audio/video in an allowed container
    │   ├── CorruptMedia        `corrupt_media`: media that cannot be decoded
    │   ├── LimitExceeded       over a MEDIA_* limit, before any transcode:
    │   │                       `frame_too_large`, `media_too_long`, `too_many_streams`
    │   ├── ProcessingLimit     `processing_limit`: a tool ran out of its CPU time,
    │   │                       memory or wall-clock allowance (FfmpegTimeout)
    │   └── TranscodeFailed     `transcode_failed`: ffmpeg refused media that probed fine
    └── TransientError      anything worth another attempt (a crash, a full disk, a
        │                   publisher hiccup): retried with backoff by Dramatiq; when
        │                   retries run out, `failed` with `processing_failed`
        └── OutOfSpace      `insufficient_storage`: the worker's disk is full; recorded
                            in the status's `error` while retries wait for space, and
                            the final code if they run out

Any other exception counts as transient too: a bug may be a passing one, and
retries are bounded.
"""

from __future__ import annotations

from upload_service.core.diskspace import is_no_space


class MediaError(Exception):
    code = "media_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedMedia(MediaError):
    code = "unsupported_media"


class CorruptMedia(MediaError):
    code = "corrupt_media"


class LimitExceeded(MediaError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProcessingLimit(MediaError):
    code = "processing_limit"


class TranscodeFailed(MediaError):
    """ffmpeg exited non-zero on input that probed and decoded fine: the same
    file fails the same way again, so it is not retried."""

    code = "transcode_failed"


class FfmpegTimeout(ProcessingLimit):
    """ffmpeg ran past the time limit derived from the media's duration."""


class TransientError(Exception):
    pass


class OutOfSpace(TransientError):
    code = "insufficient_storage"


# What ffmpeg writes (strerror(ENOSPC)) when its output's disk is full.
NO_SPACE_TEXT = "No space left on device"


def is_out_of_space(exc: BaseException) -> bool:
    """A full disk, whether Python saw it (OSError) or a tool said so (ffmpeg's log)."""
    return is_no_space(exc) or (isinstance(exc, FfmpegFailed) and NO_SPACE_TEXT in str(exc))


class FfmpegFailed(TransientError):
    """ffmpeg failed for a reason of this machine's (a full disk, a signal from
    outside): another attempt may succeed."""
