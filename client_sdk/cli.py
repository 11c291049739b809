"""`media-upload FILE --server URL --token T`: a resumable upload with a progress bar.

Ctrl-C stops cleanly (exit 130); the same command again continues where it stopped.
`--wait` then follows processing until the media is ready and prints its outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from ._exceptions import UploadError
from ._progress import ProgressBar, human_bytes
from ._retry import RetryPolicy
from ._status import StatusClient
from ._uploader import Uploader

EXIT_INTERRUPTED = 130
SIZE_SUFFIXES = {"k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """`8M`, `512k`, `1048576` -> bytes."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = SIZE_SUFFIXES.get(value[-1:], 1) if value else 1
    number = value[:-1] if value[-1:] in SIZE_SUFFIXES else value
    try:
        size = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 8M, 512k)") from None
    if size <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="media-upload", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="the video or audio file to upload")
    p.add_argument(
        "--server", default=env("MEDIA_UPLOAD_SERVER"), help="service URL (MEDIA_UPLOAD_SERVER)"
    )
    p.add_argument(
        "--token", default=env("MEDIA_UPLOAD_TOKEN"), help="upload token (MEDIA_UPLOAD_TOKEN)"
    )
    p.add_argument(
        "--chunk-size", type=parse_size, default=8 * 1024**2, help="bytes per PATCH (default 8M)"
    )
    p.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="extra Upload-Metadata"
    )
    p.add_argument(
        "--wait", action="store_true", help="follow processing until ready; print outputs"
    )
    p.add_argument(
        "--api-key", default=env("UPLOAD_API_KEY"), help="status API key (default: the token)"
    )
    p.add_argument(
        "--wait-timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)"
    )
    p.add_argument("--poll-interval", type=float, default=2.0, help="seconds between status polls")
    p.add_argument(
        "--state-dir", type=Path, default=None, help="where resumable upload URLs are kept"
    )
    p.add_argument("--no-resume", action="store_true", help="always start a new upload")
    p.add_argument(
        "--retries", type=int, default=8, help="retries per request on network errors/5xx"
    )
    p.add_argument(
        "--limit-rate", type=parse_size, default=None, help="cap the upload rate, bytes/s"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class RateLimit:
    """Sleeps in the progress callback so that bytes/s stays under the cap."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start: tuple[float, int] | None = None

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if self.start is None:
            self.start = (now, sent)
            return
        ahead = (sent - self.start[1]) / self.rate - (now - self.start[0])
        if ahead > 0:
            time.sleep(ahead)


def _metadata(args: argparse.Namespace) -> dict[str, str]:
    meta = {"filename": args.file.name}
    for pair in args.meta:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--meta takes KEY=VALUE, got {pair!r}")
        meta[key] = value
    return meta


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not args.server or not args.token:
        raise SystemExit("media-upload: --server and --token are required (or MEDIA_UPLOAD_*)")
    if not args.file.is_file():
        raise SystemExit(f"media-upload: {args.file} is not a file")
    size = args.file.stat().st_size
    bar = ProgressBar(size, sys.stderr, label=args.file.name)
    limit = RateLimit(args.limit_rate) if args.limit_rate else None
    first: list[int] = []

    def on_progress(sent: int, total: int) -> None:
        if not first:
            first.append(sent)
            if sent:
                print(f"resuming at {human_bytes(sent)} of {human_bytes(total)}", file=sys.stderr)
        if limit:
            limit(sent)
        if not args.quiet:
            bar(sent, total)

    uploader = Uploader(
        args.server,
        args.token,
        chunk_size=args.chunk_size,
        resume=not args.no_resume,
        store=args.state_dir,
        retry=RetryPolicy(retries=args.retries),
    )
    try:
        result = uploader.upload(args.file, metadata=_metadata(args), on_progress=on_progress)
    except KeyboardInterrupt:
        bar.finish()
        print(
            f"\ninterrupted at {human_bytes(bar.sent)} of {human_bytes(size)}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    except UploadError as exc:
        bar.finish()
        print(f"media-upload: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        uploader.close()
    bar.finish()
    print(f"uploaded {args.file} ({human_bytes(size)}) as {result.id}", file=sys.stderr)
    print(result.url)
    if args.wait:
        sys.exit(_follow(args, result.id))


def absolute_urls(value: Any, server: str) -> Any:
    """Output URLs may be relative to the service (`/media/...`): make them usable."""
    if isinstance(value, str) and value.startswith("/"):
        return urljoin(server.rstrip("/") + "/", value)
    if isinstance(value, dict):
        return {k: absolute_urls(v, server) for k, v in value.items()}
    if isinstance(value, list):
        return [absolute_urls(v, server) for v in value]
    return value


def _follow(args: argparse.Namespace, upload_id: str) -> int:
    def show(record: dict[str, object]) -> None:
        progress = record.get("progress") or {}
        assert isinstance(progress, dict)
        stage = f" {progress.get('stage')} {progress.get('percent') or 0:.0f}%" if progress else ""
        print(f"state: {record.get('state')}{stage}", file=sys.stderr)

    with StatusClient(args.server, args.api_key or args.token) as status:
        try:
            record = status.wait(upload_id, args.wait_timeout, args.poll_interval, on_change=show)
        except KeyboardInterrupt:
            print(
                "\nstopped waiting; the upload is complete and processing goes on", file=sys.stderr
            )
            return EXIT_INTERRUPTED
        except UploadError as exc:
            print(f"media-upload: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    print(
        json.dumps(
            {
                "id": upload_id,
                "state": record["state"],
                "outputs": absolute_urls(record.get("outputs"), args.server),
                "error": record.get("error"),
            },
            indent=2,
        )
    )
    return 0 if record["state"] == "ready" else 1


if __name__ == "__main__":
    main()
