"""The OpenAPI document's paths: the status and events API, the tus endpoint's
outline (tus 1.0.0 itself is its own specification), health."""

from __future__ import annotations

from typing import Any

from upload_service.http.openapi_schemas import ID_PATTERN, Schema, ref

Security = list[dict[str, list[str]]]
BACKEND: Security = [{"apiKey": []}]
BACKEND_OR_OWNER: Security = [{"apiKey": []}, {"uploadToken": []}]
OWNER: Security = [{"uploadToken": []}]


def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(description: str) -> Schema:
    return _json(ref("Error"), description)


def header(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "header",
        "description": description,
        "schema": schema or {"type": "string"},
    }


UPLOAD_ID = {
    "name": "upload_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ID_PATTERN},
}
IF_NONE_MATCH = header(
    "If-None-Match", "the ETag of the last answer (or `*`): 304 when nothing changed"
)
ETAG = {"ETag": {"description": "send it back as If-None-Match", "schema": {"type": "string"}}}
UNAUTHORIZED = _error(
    "missing, expired or wrong token; or a wrong API key (the message says which)"
)
NOT_FOUND = _error("no such upload, or another user's (the same answer, on purpose)")


def status_paths() -> dict[str, Schema]:
    return {
        "/v1/uploads/{upload_id}": {
            "get": {
                "summary": "An upload's status",
                "operationId": "getStatus",
                "security": BACKEND_OR_OWNER,
                "parameters": [UPLOAD_ID, IF_NONE_MATCH],
                "responses": {
                    "200": _json(ref("Status"), "the status object", headers=ETAG),
                    "304": {"description": "unchanged since the ETag sent", "headers": ETAG},
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            }
        },
        "/v1/uploads": {
            "get": {
                "summary": "Several uploads' status: the ids given, or a listing page",
                "description": (
                    "With `ids`: those uploads (API key, or an upload token for its own). "
                    "Without: every upload, or one owner's, oldest first, a page at a time "
                    "(API key only); pass `next_cursor` back as `cursor` for the next page."
                ),
                "operationId": "getStatuses",
                "security": BACKEND_OR_OWNER,
                "parameters": [
                    {
                        "name": "ids",
                        "in": "query",
                        "description": "up to 100 ids, comma-separated; unknown ids are left out",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "owner",
                        "in": "query",
                        "description": "listing: only this user's uploads (the token `sub`)",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "description": "listing: only uploads in these states, comma-separated",
                        "schema": {"type": "string", "examples": ["ready,failed"]},
                    },
                    {
                        "name": "created_after",
                        "in": "query",
                        "description": "listing: only uploads created after this ISO 8601 time",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "listing: the previous page's `next_cursor`, as given",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "listing: uploads per page",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                    },
                    IF_NONE_MATCH,
                ],
                "responses": {
                    "200": _json(
                        ref("StatusBatch"),
                        "the known uploads, in the order asked; a listing's oldest first",
                        headers=ETAG,
                    ),
                    "304": {"description": "unchanged since the ETag sent", "headers": ETAG},
                    "400": _error(
                        "more than 100 ids or a malformed one; a listing filter that is "
                        "not understood (state, created_after, limit, a foreign cursor)"
                    ),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/v1/uploads/{upload_id}/events": {
            "get": {
                "summary": "The webhooks sent for an upload, with every attempt",
                "operationId": "getEvents",
                "security": BACKEND,
                "parameters": [UPLOAD_ID],
                "responses": {
                    "200": _json(ref("EventHistory"), "events in the order first attempted"),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND,
                },
            }
        },
        "/v1/uploads/{upload_id}/events/{event_id}/resend": {
            "post": {
                "summary": "Send an event again, under the same webhook-id",
                "operationId": "resendEvent",
                "security": BACKEND,
                "parameters": [
                    UPLOAD_ID,
                    {
                        "name": "event_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "202": _json(ref("Resent"), "queued; a worker delivers it"),
                    "401": UNAUTHORIZED,
                    "404": _error("no such upload or event"),
                    "409": _error("WEBHOOK_URL is not set (code `webhooks_disabled`)"),
                },
            }
        },
    }


TUS = header("Tus-Resumable", "the tus version", {"const": "1.0.0"})
TUS_ERRORS = {
    "401": UNAUTHORIZED,
    "404": NOT_FOUND,
    "410": _error("terminated or expired"),
    "412": _error("Tus-Resumable is not 1.0.0"),
}


def tus_paths() -> dict[str, Schema]:
    """An outline: the headers and answers the tus 1.0.0 specification gives in full."""
    offset = {"Upload-Offset": {"schema": {"type": "integer"}, "description": "bytes received"}}
    return {
        "/files/": {
            "post": {
                "summary": "Create an upload (tus creation, creation-with-upload, concatenation)",
                "operationId": "createUpload",
                "security": OWNER,
                "parameters": [
                    TUS,
                    header("Upload-Length", "the size in bytes", {"type": "integer", "minimum": 0}),
                    header("Upload-Defer-Length", "1: the size comes later", {"const": "1"}),
                    header(
                        "Upload-Metadata",
                        "comma-separated `key base64(value)`; `filename` and `filetype` are used",
                    ),
                ],
                "responses": {
                    "201": {
                        "description": "created",
                        "headers": {"Location": {"schema": {"type": "string"}}, **offset},
                    },
                    "400": _error("a malformed header"),
                    "413": _error("over UPLOAD_MAX_SIZE or the token's max_bytes"),
                    **{k: v for k, v in TUS_ERRORS.items() if k in ("401", "412")},
                },
            },
            "options": {
                "summary": "The server's tus capabilities (no token needed)",
                "operationId": "tusOptions",
                "security": [],
                "responses": {
                    "204": {
                        "description": "Tus-Version, Tus-Extension, Tus-Max-Size and "
                        "Tus-Checksum-Algorithm"
                    }
                },
            },
        },
        "/files/{upload_id}": {
            "parameters": [UPLOAD_ID],
            "head": {
                "summary": "Where the upload stands (without Tus-Resumable: the file's headers)",
                "operationId": "uploadOffset",
                "security": OWNER,
                "parameters": [TUS],
                "responses": {
                    "200": {"description": "Upload-Offset, Upload-Length", "headers": offset},
                    **TUS_ERRORS,
                },
            },
            "patch": {
                "summary": "Append bytes at Upload-Offset",
                "operationId": "appendBytes",
                "security": OWNER,
                "parameters": [
                    TUS,
                    header("Upload-Offset", "where these bytes go", {"type": "integer"}),
                    header("Upload-Checksum", "`<algorithm> <base64 digest>` of this body"),
                ],
                "requestBody": {"content": {"application/offset+octet-stream": {"schema": {}}}},
                "responses": {
                    "204": {"description": "appended", "headers": offset},
                    "409": _error(
                        "Upload-Offset is not where the upload stands: HEAD, then resume"
                    ),
                    "415": _error("Content-Type is not application/offset+octet-stream"),
                    "423": _error("another request is writing this upload: retry shortly"),
                    "460": _error("the checksum did not match: send the chunk again"),
                    **TUS_ERRORS,
                },
            },
            "delete": {
                "summary": "Terminate the upload (and withdraw what was published)",
                "operationId": "terminateUpload",
                "security": OWNER,
                "parameters": [TUS],
                "responses": {"204": {"description": "terminated"}, **TUS_ERRORS},
            },
            "get": {
                "summary": "A finished upload's bytes (Range supported)",
                "operationId": "downloadOriginal",
                "security": BACKEND_OR_OWNER,
                "responses": {
                    "200": {
                        "description": "the file",
                        "content": {"application/octet-stream": {"schema": {}}},
                    },
                    "206": {"description": "the range asked for"},
                    "401": UNAUTHORIZED,
                    "404": _error("no such upload, not yet finished, or another user's"),
                },
            },
        },
    }


def health_paths() -> dict[str, Schema]:
    def plain(summary: str, operation: str, responses: dict[str, Schema]) -> Schema:
        return {
            "get": {
                "summary": summary,
                "operationId": operation,
                "security": [],
                "responses": responses,
            }
        }

    return {
        "/healthz": plain("The process is up", "healthz", {"200": {"description": "ok"}}),
        "/readyz": plain(
            "Redis answers and storage is writable",
            "readyz",
            {
                "200": {"description": "ready"},
                "503": {"description": "not ready: `checks` says what"},
            },
        ),
        "/metrics": plain("Prometheus metrics", "metrics", {"200": {"description": "text format"}}),
        "/openapi.json": plain("This document", "openapi", {"200": {"description": "OpenAPI 3.1"}}),
    }
