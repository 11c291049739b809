"""The OpenAPI document's schemas: the status object, events, token claims, errors.

The enumerations come from the code that writes the values (states, stages, event
types, media kinds, error codes), so the description cannot drift from them.
Objects are left open (`additionalProperties` allowed) where the contract may grow:
it changes only by extension, and a client must ignore what it does not know.
"""

from __future__ import annotations

from typing import Any

from upload_service.core import errors
from upload_service.core.events import EVENT_TYPES
from upload_service.core.status import STAGES, STATES
from upload_service.core.tokens import KINDS

Schema = dict[str, Any]
ID_PATTERN = "^[A-Za-z0-9_-]{1,128}$"
# Codes of `media.failed` (the pipeline's, in processors/failures.py, which this
# package may not import) besides those of HTTP errors.
PROCESSING_ERROR_CODES = (
    "media_error",
    "unsupported_media",
    "corrupt_media",
    "processing_limit",
    "transcode_failed",
    "insufficient_storage",
)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def http_error_codes() -> list[str]:
    kinds = [v for v in vars(errors).values() if isinstance(v, type)]
    codes = {k.code for k in kinds if issubclass(k, errors.ServiceError)}
    return sorted(codes | {"webhooks_disabled"})


URL = {"type": "string", "description": "absolute, or relative to the service (`/media/...`)"}

MEDIA_URL_LIST_ITEM = {
    "rendition": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "height": {"type": ["integer", "null"]},
            "width": {"type": ["integer", "null"]},
            "bitrate": {"type": ["integer", "null"]},
            "url": URL,
        },
    },
    "caption": {
        "type": "object",
        "required": ["lang", "format", "url"],
        "properties": {
            "lang": {"type": "string"},
            "format": {"type": "string", "enum": ["vtt", "srt"]},
            "url": URL,
        },
    },
}


def schemas() -> dict[str, Schema]:
    return {
        "Status": {
            "type": "object",
            "description": (
                "An upload as the service sees it. Fields that do not apply yet are null "
                "(absent in `outputs`). Media URLs are signed when MEDIA_ACCESS=signed: "
                "read the status again for fresh ones."
            ),
            "required": [
                "id",
                "owner",
                "state",
                "offset",
                "length",
                "metadata",
                "meta",
                "progress",
                "media",
                "outputs",
                "error",
                "created_at",
                "updated_at",
            ],
            "properties": {
                "id": {"type": "string", "pattern": ID_PATTERN},
                "owner": {"type": "string", "description": "the upload token's `sub`"},
                "state": {"type": "string", "enum": list(STATES)},
                "offset": {"type": "integer", "minimum": 0},
                "length": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "null until known (creation-defer-length)",
                },
                "metadata": {
                    "type": "object",
                    "description": "Upload-Metadata, decoded (`filename`, `filetype`, ...)",
                    "additionalProperties": {"type": ["string", "null"]},
                },
                "meta": {
                    "type": ["object", "null"],
                    "description": "the token's `meta` claim, echoed",
                },
                "progress": nullable(
                    {
                        "type": "object",
                        "required": ["stage", "percent"],
                        "description": (
                            "while uploading: the bytes (stage `upload`); while processing: "
                            "the whole job, every stage together"
                        ),
                        "properties": {
                            "stage": {"type": "string", "enum": list(STAGES)},
                            "percent": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
                            "eta_s": {
                                "type": ["integer", "null"],
                                "minimum": 0,
                                "description": (
                                    "seconds until the last byte (upload) or `ready` "
                                    "(processing), from the measured speed; null: not known yet"
                                ),
                            },
                        },
                    }
                ),
                "media": nullable(
                    {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {
                            "kind": {"type": "string", "enum": list(KINDS)},
                            "duration": {"type": ["number", "null"]},
                            "width": {"type": ["integer", "null"]},
                            "height": {"type": ["integer", "null"]},
                        },
                    }
                ),
                "outputs": {
                    "type": "object",
                    "description": (
                        "what processing published: from `playable` on, `hls` (the master, "
                        "the smallest rendition at first), `renditions` as each is added, "
                        "`poster`, `storyboard`; every output at `ready`"
                    ),
                    "properties": {
                        "original": URL,
                        "hls": {**URL, "description": "the HLS master playlist"},
                        "poster": URL,
                        "mp4": URL,
                        "audio": URL,
                        "renditions": {"type": "array", "items": MEDIA_URL_LIST_ITEM["rendition"]},
                        "captions": {"type": "array", "items": MEDIA_URL_LIST_ITEM["caption"]},
                        "transcript": {**URL, "description": "the JSON transcript"},
                        "storyboard": {
                            **URL,
                            "description": (
                                "WebVTT of thumbnails for scrubbing: each cue names a tile of "
                                "the sprite sheet, `storyboard.jpg#xywh=x,y,w,h`"
                            ),
                        },
                    },
                },
                "error": nullable(ref("ErrorDetail")),
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "StatusBatch": {
            "type": "object",
            "required": ["uploads"],
            "properties": {
                "uploads": {"type": "array", "items": ref("Status")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "a listing's: the next page's cursor, null on the last",
                },
            },
        },
        "ErrorDetail": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "stable, for programs; new codes may appear",
                    "examples": [*http_error_codes(), *PROCESSING_ERROR_CODES],
                },
                "message": {"type": "string", "description": "for people"},
            },
        },
        "Error": {
            "type": "object",
            "description": "The body of every error response (none on HEAD).",
            "required": ["error"],
            "properties": {"error": ref("ErrorDetail")},
        },
        "Event": {
            "type": "object",
            "description": (
                "A webhook's body. Its id travels as the `webhook-id` header, the same on "
                "every attempt: drop ids already handled."
            ),
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"type": "string", "enum": list(EVENT_TYPES)},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": ref("Status"),
            },
        },
        "UploadTokenClaims": {
            "type": "object",
            "description": (
                "The claims of an upload token: a JWT signed HS256 with UPLOAD_TOKEN_SECRET, "
                "minted by the backend for one user and sent as `Authorization: Bearer`."
            ),
            "required": ["sub", "exp"],
            "properties": {
                "sub": {"type": "string", "minLength": 1, "description": "the user id"},
                "exp": {"type": "integer", "description": "expiry, Unix time"},
                "iat": {"type": "integer"},
                "max_bytes": {"type": "integer", "minimum": 0, "description": "size cap"},
                "kinds": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(KINDS)},
                    "description": "media kinds allowed",
                },
                "meta": {
                    "type": "object",
                    "description": 'echoed in status and webhooks, e.g. {"course_id": 12}',
                },
            },
        },
        "EventHistory": {
            "type": "object",
            "required": ["upload_id", "events"],
            "properties": {
                "upload_id": {"type": "string"},
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "type", "attempts", "delivered"],
                        "properties": {
                            "id": {"type": "string"},
                            "type": {"type": ["string", "null"]},
                            "timestamp": {"type": "string", "format": "date-time"},
                            "data": ref("Status"),
                            "attempts": {"type": "array", "items": {"type": "object"}},
                            "delivered": {"type": "boolean"},
                            "last_outcome": {
                                "type": ["string", "null"],
                                "enum": ["delivered", "retrying", "stopped", "gave_up", None],
                            },
                        },
                    },
                },
            },
        },
        "Resent": {
            "type": "object",
            "required": ["event_id", "attempt", "status"],
            "properties": {
                "event_id": {"type": "string"},
                "attempt": {"type": "integer"},
                "status": {"const": "queued"},
            },
        },
    }
