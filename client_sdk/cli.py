"""`media-upload FILE --server URL --token T`: a resumable upload with a progress bar.

Ctrl-C stops cleanly (exit 130); the same command again continues where it stopped.
`--wait` then follows processing until the media is ready and prints its outputs.
stdout carries only the result (the upload URL, or one JSON object with `--json` or
`--wait`); progress and messages go to stderr, so `| jq` always reads JSON.
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

import jwt

from ._exceptions import (
    ChecksumMismatch,
    Gone,
    NetworkError,
    ServerError,
    TooLarge,
    Unauthorized,
    UploadError,
    WaitTimeout,
)
from ._progress import ProgressBar, human_bytes
from ._rate import RateLimit
from ._retry import RetryPolicy
from ._status import StatusClient, describe_progress
from ._uploader import Uploader, UploadResult

EXIT_OK = 0
EXIT_FAILED = 1  # the upload did not complete (network, server, size, gone)
EXIT_USAGE = 2  # wrong arguments (argparse's own code)
EXIT_TOKEN = 3  # the token was refused: a new one, and the same command resumes
EXIT_PROCESSING = 4  # --wait: processing ended in failed, terminated or expired
EXIT_WAIT_TIMEOUT = 5  # --wait: still processing after --wait-timeout
EXIT_INTERRUPTED = 130
EXIT_CODES = f"""exit status:
  {EXIT_OK}    uploaded (and with --wait: ready)
  {EXIT_FAILED}    the upload failed: network, server, too large, gone
  {EXIT_USAGE}    wrong arguments
  {EXIT_TOKEN}    the token was refused (expired, wrong): get a new one, run again to resume
  {EXIT_PROCESSING}    --wait: processing ended failed, terminated or expired
  {EXIT_WAIT_TIMEOUT}    --wait: still processing after --wait-timeout (the upload is complete)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): run the same command again to resume"""

RESUME = "run the same command again: the upload resumes where it stopped"
# What to do next, by what went wrong (most specific first).
NEXT_STEP: tuple[tuple[type[UploadError], str], ...] = (
    (Unauthorized, f"get a new upload token, then {RESUME}"),
    (TooLarge, "the file is over the server's or the token's size limit"),
    (Gone, "the upload no longer exists; running the same command starts a new one"),
    (ChecksumMismatch, f"chunks kept arriving damaged; check the network, then {RESUME}"),
    (NetworkError, f"check the connection and --server, then {RESUME}"),
    (ServerError, f"the server failed; {RESUME} (later, if it persists)"),
)
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
    p = argparse.ArgumentParser(
        prog="media-upload",
        description=__doc__.splitlines()[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        "--json", action="store_true", help="print the result as one JSON object on stdout"
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
        "--limit-rate",
        type=parse_size,
        default=None,
        help="at most this many bytes in any one second (e.g. 2M)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


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
        _usage("--server and --token are required (or MEDIA_UPLOAD_SERVER, MEDIA_UPLOAD_TOKEN)")
    if not args.file.is_file():
        _usage(f"{args.file} is not a file")
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
        sys.exit(_report(exc, args.token))
    finally:
        uploader.close()
    bar.finish()
    print(f"uploaded {args.file} ({human_bytes(size)}) as {result.id}", file=sys.stderr)
    if args.wait:
        sys.exit(_follow(args, result))
    if args.json:
        print(json.dumps(_summary(result), indent=2))
    else:
        print(result.url)


def _usage(message: str) -> None:
    print(f"media-upload: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _report(exc: UploadError, token: str | None) -> int:
    """The error on stderr, in the server's words, with what to do next; the exit status."""
    print(f"media-upload: {type(exc).__name__}: {exc}", file=sys.stderr)
    if isinstance(exc, Unauthorized) and exc.server_message is None:
        # A HEAD (resuming) has no body to explain itself: look at the token ourselves.
        expired = _expired_at(token)
        if expired:
            print(f"media-upload: the upload token expired at {expired}", file=sys.stderr)
    step = next((text for kind, text in NEXT_STEP if isinstance(exc, kind)), None)
    if step:
        print(f"media-upload: {step}", file=sys.stderr)
    return EXIT_TOKEN if isinstance(exc, Unauthorized) else EXIT_FAILED


def _expired_at(token: str | None) -> str | None:
    try:
        exp = jwt.decode(token or "", options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return None
    if not isinstance(exp, int | float) or exp > time.time():
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(exp))


def _summary(result: UploadResult) -> dict[str, Any]:
    return {"id": result.id, "url": result.url, "size": result.size, "resumed": result.resumed}


def absolute_urls(value: Any, server: str) -> Any:
    """Output URLs may be relative to the service (`/media/...`): make them usable."""
    if isinstance(value, str) and value.startswith("/"):
        return urljoin(server.rstrip("/") + "/", value)
    if isinstance(value, dict):
        return {k: absolute_urls(v, server) for k, v in value.items()}
    if isinstance(value, list):
        return [absolute_urls(v, server) for v in value]
    return value


def _follow(args: argparse.Namespace, result: UploadResult) -> int:
    announced: list[str] = []

    def show(record: dict[str, object]) -> None:
        progress = describe_progress(record)
        print(f"state: {record.get('state')}{' ' + progress if progress else ''}", file=sys.stderr)
        outputs = record.get("outputs") or {}
        assert isinstance(outputs, dict)
        if record.get("state") == "playable" and outputs.get("hls") and not announced:
            # The smallest rendition plays already: the rest joins the same playlist.
            announced.append(str(outputs["hls"]))
            hls = absolute_urls(outputs["hls"], args.server)
            print(f"playable now: {hls}", file=sys.stderr)

    with StatusClient(args.server, args.api_key or args.token) as status:
        try:
            record = status.wait(result.id, args.wait_timeout, args.poll_interval, on_change=show)
        except KeyboardInterrupt:
            print(
                "\nstopped waiting; the upload is complete and processing goes on", file=sys.stderr
            )
            return EXIT_INTERRUPTED
        except WaitTimeout as exc:
            print(f"media-upload: {exc}; the upload is complete", file=sys.stderr)
            return EXIT_WAIT_TIMEOUT
        except UploadError as exc:
            return _report(exc, args.api_key or args.token)
    print(
        json.dumps(
            {
                **_summary(result),
                "state": record["state"],
                "outputs": absolute_urls(record.get("outputs"), args.server),
                "error": record.get("error"),
            },
            indent=2,
        )
    )
    return EXIT_OK if record["state"] == "ready" else EXIT_PROCESSING


if __name__ == "__main__":
    main()
