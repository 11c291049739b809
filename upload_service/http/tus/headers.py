"""Parsing and formatting of tus headers; every malformed value is a ServiceError."""

from __future__ import annotations

import base64
import binascii
import hashlib
from email.utils import formatdate
from urllib.parse import urlsplit

from upload_service.core.errors import (
    InvalidChecksum,
    InvalidConcat,
    InvalidLength,
    InvalidMetadata,
    InvalidOffset,
    UnsupportedChecksum,
)

TUS_VERSION = "1.0.0"
CHECKSUM_ALGORITHMS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
    "concatenation",
)
TUS_HEADERS = (
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
    "Upload-Checksum",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "Upload-Limit",
    "Location",
    "X-HTTP-Method-Override",
    "X-Request-ID",
)


def _non_negative(value: str, error: type[Exception]) -> int:
    # int() would accept "+5", " 5" and "1_000": the header grammar is digits only.
    # More than 19 digits is past any int64 (and int() refuses 4300+ digits).
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise error()
    return int(value)


def parse_length(value: str) -> int:
    return _non_negative(value.strip(), InvalidLength)


def parse_offset(value: str | None) -> int:
    if value is None:
        raise InvalidOffset("Upload-Offset header is required")
    return _non_negative(value.strip(), InvalidOffset)


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """`key base64value,key2,...` into a dict; a key without value maps to None."""
    metadata: dict[str, str | None] = {}
    if value is None or not value.strip():
        return metadata
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise InvalidMetadata(f"Upload-Metadata pair {pair.strip()!r} is malformed")
        key = parts[0]
        if not key.isascii() or not key.isprintable() or key in metadata:
            raise InvalidMetadata(f"Upload-Metadata key {key!r} is invalid or repeated")
        if len(parts) == 1:
            metadata[key] = None
            continue
        try:
            raw = base64.b64decode(parts[1], validate=True)
            metadata[key] = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise InvalidMetadata(
                f"Upload-Metadata value of {key!r} is not valid base64 of UTF-8 text"
            ) from None
    return metadata


def format_metadata(metadata: dict[str, str | None]) -> str:
    return ",".join(
        key if value is None else f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in metadata.items()
    )


def parse_checksum(value: str) -> tuple[str, bytes]:
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        supported = ",".join(CHECKSUM_ALGORITHMS)
        raise UnsupportedChecksum(
            f"checksum algorithm {algorithm!r} not supported; use {supported}"
        )
    try:
        expected = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidChecksum("Upload-Checksum value is not valid base64") from None
    if len(expected) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise InvalidChecksum(f"Upload-Checksum has the wrong length for {algorithm}")
    return algorithm, expected


def parse_concat(value: str | None) -> tuple[str | None, list[str]]:
    """None, ("partial", []) or ("final", [upload ids])."""
    if value is None:
        return None, []
    value = value.strip()
    if value == "partial":
        return "partial", []
    if value.startswith("final;"):
        ids = [_id_of(url) for url in value[len("final;") :].split()]
        if not ids:
            raise InvalidConcat("Upload-Concat: final needs at least one partial upload URL")
        return "final", ids
    raise InvalidConcat("Upload-Concat must be 'partial' or 'final;<url> <url> ...'")


def _id_of(url: str) -> str:
    try:
        path = urlsplit(url).path.rstrip("/")
    except ValueError:  # such as an unclosed IPv6 host: "http://[::1"
        raise InvalidConcat(f"Upload-Concat names an invalid upload URL {url!r}") from None
    upload_id = path.rsplit("/", 1)[-1]
    if not upload_id:
        raise InvalidConcat(f"Upload-Concat names an invalid upload URL {url!r}")
    return upload_id


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)
