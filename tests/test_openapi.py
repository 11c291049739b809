"""/openapi.json: valid OpenAPI 3.1, current in docs/, and true of what the service
answers: live statuses (uploading, ready, failed), a batch, the events API, errors
and the webhooks a real worker sends are each held against the schema the
document gives for that path, method and status code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from client_helpers import make_video, random_file, running_worker
from conftest import API_KEY, TOKEN_SECRET, LiveServer
from jsonschema import Draft202012Validator
from live_helpers import wait_until
from openapi_spec_validator import validate
from webhook_helpers import SECRET, Receiver

from client_sdk import StatusClient, Uploader, mint_upload_token
from upload_service.core.settings import Settings
from upload_service.http.openapi import document
from upload_service.http.openapi_schemas import PROCESSING_ERROR_CODES

REPO = Path(__file__).resolve().parent.parent
DOC = document()


def holds(schema: dict[str, Any], instance: Any) -> None:
    """Validates `instance` against a schema of the document (its $refs resolved)."""
    root = {**schema, "components": DOC["components"]}
    Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        instance
    )


def answers_as_documented(path: str, method: str, response: httpx.Response) -> None:
    """The status code is one the document lists there, and the body fits its schema."""
    documented = DOC["paths"][path][method]["responses"]
    code = str(response.status_code)
    assert code in documented, f"{method.upper()} {path} answered {code}, not documented"
    content = documented[code].get("content", {}).get("application/json")
    if content is not None:
        holds(content["schema"], response.json())


def test_the_document_is_valid_openapi_31_and_served_as_built() -> None:
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")
    assert set(DOC["webhooks"]) == {
        "upload.created",
        "upload.completed",
        "media.playable",
        "media.ready",
        "media.failed",
        "upload.terminated",
        "upload.expired",
    }


def test_docs_openapi_json_is_the_current_document() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "upload_service.http.openapi"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads((REPO / "docs/openapi.json").read_text()) == json.loads(printed), (
        "docs/openapi.json is stale: python -m upload_service.http.openapi > docs/openapi.json"
    )


def test_the_processing_error_codes_are_the_pipelines() -> None:
    from processors import failures

    codes = {
        kind.code
        for kind in vars(failures).values()
        if isinstance(kind, type) and isinstance(getattr(kind, "code", None), str)
    }
    assert codes == set(PROCESSING_ERROR_CODES)


def test_token_claims_fit_the_claims_schema() -> None:
    token = mint_upload_token(
        TOKEN_SECRET, "user-1", max_bytes=10, kinds=["video"], meta={"course_id": 12}
    )
    holds(
        {"$ref": "#/components/schemas/UploadTokenClaims"},
        jwt.decode(token, TOKEN_SECRET, algorithms=["HS256"]),
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_live_answers_and_webhooks_fit_the_document(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    hooked = settings.with_changes(webhook_url=receiver.url, webhook_secret=SECRET)
    server = LiveServer(hooked).start()
    backend = {"Authorization": f"Bearer {API_KEY}"}
    token = mint_upload_token(TOKEN_SECRET, "user-1", meta={"course_id": 12})
    try:
        served = httpx.get(f"{server.url}/openapi.json")
        assert served.status_code == 200 and served.json() == DOC

        with running_worker(hooked), Uploader(server.url, token, store=tmp_path) as up:
            video = up.upload(make_video(tmp_path / "talk.mp4", seconds=2))
            junk = up.upload(random_file(tmp_path / "junk.mp4", 20_000))
            partial = up.upload(random_file(tmp_path / "part.bin", 50_000), stop_at=10_000)
            with StatusClient(server.url, API_KEY) as status:
                assert status.wait(video.id, timeout=120, poll_interval=0.2)["state"] == "ready"
                assert status.wait(junk.id, timeout=60, poll_interval=0.2)["state"] == "failed"
            wait_until(lambda: len(receiver.requests) >= 7, "seven webhooks", timeout=30)

        one = "/v1/uploads/{upload_id}"
        for upload_id in (video.id, junk.id, partial.id):  # ready, failed, uploading
            answers_as_documented(
                one, "get", httpx.get(f"{server.url}/v1/uploads/{upload_id}", headers=backend)
            )
        ids = f"{video.id},{junk.id},unknown-id"
        batch = httpx.get(f"{server.url}/v1/uploads?ids={ids}", headers=backend)
        answers_as_documented("/v1/uploads", "get", batch)
        assert [u["state"] for u in batch.json()["uploads"]] == ["ready", "failed"]
        answers_as_documented(
            "/v1/uploads/{upload_id}/events",
            "get",
            httpx.get(f"{server.url}/v1/uploads/{video.id}/events", headers=backend),
        )
        # Errors: their codes documented, their bodies the Error schema.
        for path, url, headers in [
            (one, f"/v1/uploads/{video.id}", {"Authorization": "Bearer wrong-key"}),
            (one, f"/v1/uploads/{video.id}", {}),
            (one, "/v1/uploads/not-there", backend),
            ("/v1/uploads", "/v1/uploads?ids=" + ",".join(f"u{i}" for i in range(101)), backend),
        ]:
            answers_as_documented(path, "get", httpx.get(server.url + url, headers=headers))
        not_modified = httpx.get(
            f"{server.url}/v1/uploads/{video.id}", headers={**backend, "If-None-Match": "*"}
        )
        answers_as_documented(one, "get", not_modified)
    finally:
        server.stop()

    seen = set()
    for request in receiver.requests:
        event = json.loads(request.body)
        schema = DOC["webhooks"][event["type"]]["post"]["requestBody"]["content"]
        holds(schema["application/json"]["schema"], event)
        seen.add(event["type"])
    assert {"upload.created", "upload.completed", "media.ready", "media.failed"} <= seen
