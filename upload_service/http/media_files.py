"""Published files on the local disk: `<media_dir>/<id>/<name>`, and never anything else.

A name is checked twice. First as text (`name_parts`): short parts of letters,
digits, `_`, `-` and `.`, none starting with a dot, so no `..`, no dotfile (the
publisher's `.staging` and `.old` trees are dotfiles), no NUL or backslash.
Then on the disk (`open_published`): each directory is opened relative to the
previous one with O_NOFOLLOW, so a symlink anywhere below the media directory,
planted or not, is refused rather than followed, and only a regular file is
served. Bytes are streamed in blocks from the descriptor that was checked; a
file is never read whole (playlists excepted: they are small, and rewritten).
"""

from __future__ import annotations

import email.utils
import os
import re
import stat
import weakref
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from upload_service.core.ids import safe_child
from upload_service.core.playlists import is_relative, with_query
from upload_service.core.threads import run_blocking, run_read
from upload_service.http.downloads import parse_range

NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_DEPTH = 6
BLOCK = 256 * 1024
PLAYLIST_MAX = 1024 * 1024  # far above any playlist the transcoder writes
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the media dir must not hang a thread.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def name_parts(name: str) -> list[str] | None:
    """The path parts of a published name, or None if it cannot name one."""
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or not all(NAME_PART.fullmatch(part) for part in parts):
        return None
    # Uploads published before originals became private have `original.<ext>` here:
    # never served from /media (GET /files/{id} is the original's only way out).
    if len(parts) == 1 and parts[0].split(".", 1)[0] == "original":
        return None
    return parts


def open_published(media_dir: Path, upload_id: str, parts: list[str]) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file, and its stat; FileNotFoundError for anything else."""
    try:
        directory = os.open(safe_child(media_dir, upload_id), _DIR_FLAGS)
    except (OSError, ValueError):
        raise FileNotFoundError(upload_id) from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=directory)
    except OSError:  # ELOOP for a symlink, ENOTDIR, ENOENT: all the same to a reader
        raise FileNotFoundError("/".join(parts)) from None
    finally:
        os.close(directory)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileNotFoundError("/".join(parts))
    return fd, info


def read_small(media_dir: Path, upload_id: str, parts: list[str]) -> bytes | None:
    """A playlist's bytes (None: no such file, or too large to be one of ours)."""
    try:
        fd, info = open_published(media_dir, upload_id, parts)
    except FileNotFoundError:
        return None
    try:
        if info.st_size > PLAYLIST_MAX:
            return None
        return os.pread(fd, PLAYLIST_MAX, 0)
    finally:
        os.close(fd)


class LocalMedia:
    """Where published files are when the publisher is local (or B2 in public mode)."""

    def __init__(self, media_dir: Path) -> None:
        self.media_dir = Path(media_dir)

    async def playlist(self, upload_id: str, parts: list[str]) -> bytes | None:
        return await run_read(read_small, self.media_dir, upload_id, parts)

    async def file(
        self, request: Request, upload_id: str, parts: list[str], headers: dict[str, str]
    ) -> Response | None:
        try:
            fd, info = await run_read(open_published, self.media_dir, upload_id, parts)
        except FileNotFoundError:
            return None
        return file_response(request, fd, info, headers)

    async def uri_mapper(
        self, upload_id: str, parts: list[str], query: str
    ) -> Callable[[str], str]:
        # Every file is served here, under the same signature: just pass it on.
        return lambda uri: with_query(uri, query) if is_relative(uri) else uri


def file_response(
    request: Request, fd: int, info: os.stat_result, headers: dict[str, str]
) -> Response:
    """200, 206, 304 or 416 for an open file, with validators; owns `fd` from here on."""
    body = _FileBody(fd, 0, info.st_size)
    size = info.st_size
    etag = f'"{size:x}-{info.st_mtime_ns:x}"'
    headers = {
        **headers,
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": email.utils.formatdate(info.st_mtime, usegmt=True),
    }
    if _not_modified(request, etag, info.st_mtime):
        body.close()
        return Response(status_code=304, headers=headers)
    start, end, status = 0, size, 200
    range_header = request.headers.get("range")
    if range_header and _if_range_holds(request, etag, headers["Last-Modified"]):
        parsed = parse_range(range_header, size)
        if parsed is None:
            body.close()
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        start, end = parsed
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        body.close()
        return Response(status_code=status, headers=headers)
    body.position, body.end = start, end
    return StreamingResponse(body, status_code=status, headers=headers)


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since:
        try:
            return int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _if_range_holds(request: Request, etag: str, last_modified: str) -> bool:
    """Range applies unless If-Range names another version of the file."""
    if_range = request.headers.get("if-range")
    return if_range is None or if_range.strip() in (etag, last_modified)


class _FileBody:
    """Blocks [start, end) of a descriptor, read by a worker thread.

    The descriptor is closed when the body ends, fails or is cancelled (the
    client went away: StreamingResponse cancels it), and when the body is
    dropped without ever being read.
    """

    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.position = start
        self.end = end
        self.close = weakref.finalize(self, os.close, fd)

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self.position >= self.end:
            self.close()
            raise StopAsyncIteration
        try:
            block = await run_blocking(
                os.pread, self.fd, min(BLOCK, self.end - self.position), self.position
            )
        except BaseException:
            self.close()
            raise
        if not block:  # the file shrank under us: end short, never pad
            self.close()
            raise StopAsyncIteration
        self.position += len(block)
        return block
