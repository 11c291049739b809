"""The backend's view of webhook deliveries: what was sent, every attempt, and resend.

`GET /v1/uploads/{id}/events` and `POST /v1/uploads/{id}/events/{event_id}/resend`,
both for the API key only (an upload's owner has no business with the backend's
endpoint). Resending enqueues the stored event again under the same `webhook-id`;
the POST itself happens in a worker, like every delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from upload_service.core.errors import NotFound, ServiceError, Unauthorized
from upload_service.core.ids import is_safe_id
from upload_service.core.threads import run_blocking
from upload_service.core.tokens import bearer, is_api_key, wrong_api_key

if TYPE_CHECKING:
    from upload_service.http.services import Services


class WebhooksDisabled(ServiceError):
    status = 409
    code = "webhooks_disabled"
    message = "WEBHOOK_URL is not set: there is nowhere to send events"


class WebhooksAPI:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.log = services.state.webhooks

    def _require_api_key(self, request: Request) -> None:
        token = bearer(request.headers.get("authorization"))
        api_key = self.services.settings.api_key
        if token is None:
            raise Unauthorized("send Authorization: Bearer <API key>")
        if not is_api_key(token, api_key):
            raise wrong_api_key(api_key)

    async def _require_upload(self, upload_id: str) -> None:
        if not is_safe_id(upload_id):
            raise NotFound("no such upload")
        known = await self.services.reader.get_raw(upload_id) is not None
        if not known and not await run_blocking(self.log.exists, upload_id):
            raise NotFound(f"upload {upload_id} not found")

    async def events(self, request: Request) -> Response:
        self._require_api_key(request)
        upload_id = request.path_params["upload_id"]
        await self._require_upload(upload_id)
        events = await run_blocking(self.log.history, upload_id)
        return JSONResponse(
            {"upload_id": upload_id, "events": events}, headers={"Cache-Control": "no-store"}
        )

    async def resend(self, request: Request) -> Response:
        self._require_api_key(request)
        upload_id = request.path_params["upload_id"]
        event_id = request.path_params["event_id"]
        if not is_safe_id(upload_id):
            raise NotFound("no such upload")
        if not self.services.settings.webhook_url:
            raise WebhooksDisabled()
        history = await run_blocking(self.log.history, upload_id)
        entry = next((e for e in history if e["id"] == event_id and "data" in e), None)
        if entry is None:
            raise NotFound(f"event {event_id} of upload {upload_id} not found")
        event = {k: entry[k] for k in ("id", "type", "timestamp", "data")}
        # Numbering goes on from the last attempt; the retry schedule starts afresh.
        attempt = max((a["attempt"] for a in entry["attempts"]), default=0) + 1
        await run_blocking(self.services.jobs.send, "deliver_webhook", event, attempt, 0)
        return JSONResponse(
            {"event_id": event_id, "attempt": attempt, "status": "queued"}, status_code=202
        )
