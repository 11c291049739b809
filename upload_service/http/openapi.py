"""`GET /openapi.json`: the API as OpenAPI 3.1, for the backend's developers and tools.

The status API, the events API, the tus endpoint's outline (tus 1.0.0 itself is
its own specification), health, and the webhooks the service sends (OpenAPI's
`webhooks` section). `python -m upload_service.http.openapi` prints it; the copy
in docs/openapi.json is that output, kept current by a test.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from upload_service.core.events import EVENT_TYPES
from upload_service.http.openapi_paths import header, health_paths, status_paths, tus_paths
from upload_service.http.openapi_schemas import Schema, ref, schemas

VERSION = "1.0.0"
EVENT_DESCRIPTIONS = {
    "upload.created": "An upload was created (its first bytes may still be on their way).",
    "upload.completed": "Every byte arrived; processing starts.",
    "media.playable": (
        "The smallest rendition plays the whole media: `data.outputs.hls` is its master "
        "playlist, which gains the other renditions and the captions until `media.ready`."
    ),
    "media.ready": "Processing published the outputs: `data.outputs` has the URLs.",
    "media.failed": "Processing gave up: `data.error` says why.",
    "upload.terminated": "The owner deleted the upload (tus termination).",
    "upload.expired": "Left unfinished past UPLOAD_EXPIRY, and removed.",
}


def _webhooks() -> dict[str, Schema]:
    signed = [
        header("webhook-id", "the event's id: the same on every attempt", {"type": "string"}),
        header("webhook-timestamp", "Unix time of this attempt", {"type": "string"}),
        header(
            "webhook-signature",
            '`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by WEBHOOK_SECRET '
            "(the base64 after `whsec_`); several, space-separated, during a key change",
        ),
    ]
    hooks = {}
    for event_type in EVENT_TYPES:
        body = {
            "allOf": [ref("Event"), {"properties": {"type": {"const": event_type}}}],
        }
        hooks[event_type] = {
            "post": {
                "summary": EVENT_DESCRIPTIONS[event_type],
                "operationId": "on_" + event_type.replace(".", "_"),
                "parameters": signed,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "2XX": {"description": "received (answer duplicates 2xx too)"},
                    "410": {"description": "stop sending this event"},
                    "default": {
                        "description": "anything else, or no answer within WEBHOOK_TIMEOUT: "
                        "sent again later (WEBHOOK_RETRY_SCHEDULE), same webhook-id"
                    },
                },
            }
        }
    return hooks


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Media upload service",
            "version": VERSION,
            "description": (
                "Resumable uploads (tus 1.0.0) for a course platform, their processing, "
                "and what the backend reads and hears of them. Errors have one body, "
                "`Error`. Upload tokens carry `UploadTokenClaims`."
            ),
        },
        "paths": {**status_paths(), **tus_paths(), **health_paths()},
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the backend: `Authorization: Bearer <UPLOAD_API_KEY>`",
                },
                "uploadToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a user: an upload token, claims as UploadTokenClaims",
                },
            },
        },
    }


@functools.cache
def _body() -> bytes:
    return json.dumps(document(), indent=1).encode()


async def endpoint(request: Request) -> Response:
    return Response(
        _body(), media_type="application/json", headers={"Cache-Control": "public, max-age=300"}
    )


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
