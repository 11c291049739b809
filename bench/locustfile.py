"""The upload-and-poll workload for people who load-test with Locust.

    UPLOAD_TOKEN_SECRET=... UPLOAD_API_KEY=... \\
        locust -f bench/locustfile.py --host http://127.0.0.1:8000

Each simulated user does what a course author's browser and the main backend do
together: create an upload, send it in PATCH chunks (tus), and poll the status
API until the upload is recorded; a second user class only polls, like the
backend refreshing a list of lessons. Settings (environment):

  UPLOAD_TOKEN          an upload token to use as is, or
  UPLOAD_TOKEN_SECRET   the server's secret, to mint one token per user (PyJWT)
  UPLOAD_API_KEY        the status API key (polling is skipped without it)
  LOCUST_UPLOAD_SIZE    bytes per upload (default 20 MB)
  LOCUST_CHUNK_SIZE     bytes per PATCH (default 5 MiB)

Request names are grouped (`/files/[id]`, `/v1/uploads/[id]`) so Locust's
statistics show one row per kind of request.
"""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import urlsplit

from locust import HttpUser, between, task

UPLOAD_SIZE = int(os.environ.get("LOCUST_UPLOAD_SIZE", str(20 * 1000 * 1000)))
CHUNK_SIZE = int(os.environ.get("LOCUST_CHUNK_SIZE", str(5 * 1024 * 1024)))
API_KEY = os.environ.get("UPLOAD_API_KEY", "")
# One random block shared by every user: the load is the server's, not the generator's.
BLOCK = os.urandom(CHUNK_SIZE)


def upload_token(sub: str) -> str:
    token = os.environ.get("UPLOAD_TOKEN")
    if token:
        return token
    secret = os.environ.get("UPLOAD_TOKEN_SECRET")
    if not secret:
        raise RuntimeError("set UPLOAD_TOKEN, or UPLOAD_TOKEN_SECRET to mint tokens")
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + 24 * 3600}, secret, algorithm="HS256")


class Uploader(HttpUser):
    """Creates an upload, PATCHes it chunk by chunk, polls its status between chunks."""

    weight = 3
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.tus = {
            "Tus-Resumable": "1.0.0",
            "Authorization": f"Bearer {upload_token('locust-' + uuid.uuid4().hex[:12])}",
        }

    @task
    def upload_and_poll(self) -> None:
        created = self.client.post(
            "/files/",
            headers={**self.tus, "Upload-Length": str(UPLOAD_SIZE)},
            name="POST /files/",
        )
        if created.status_code != 201:
            return
        path = urlsplit(created.headers["Location"]).path
        upload_id = path.rsplit("/", 1)[1]
        offset = 0
        while offset < UPLOAD_SIZE:
            size = min(CHUNK_SIZE, UPLOAD_SIZE - offset)
            with self.client.patch(
                path,
                data=BLOCK[:size],
                headers={
                    **self.tus,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
                name="PATCH /files/[id]",
                catch_response=True,
            ) as response:
                if response.status_code != 204:
                    response.failure(f"PATCH answered {response.status_code}")
                    return
                offset = int(response.headers["Upload-Offset"])
            self.poll(upload_id)
        self.client.head(path, headers=self.tus, name="HEAD /files/[id]")
        for _ in range(10):  # the status record says "uploaded" once the last byte is in
            if self.poll(upload_id) not in (None, "uploading"):
                break
            time.sleep(0.2)
        self.client.delete(path, headers=self.tus, name="DELETE /files/[id]")

    def poll(self, upload_id: str) -> str | None:
        if not API_KEY:
            return None
        response = self.client.get(
            f"/v1/uploads/{upload_id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            name="GET /v1/uploads/[id]",
        )
        if response.status_code != 200:
            return None
        state: str = response.json()["state"]
        return state


class StatusPoller(HttpUser):
    """The main backend: polls the status of a known upload, with ETag revalidation."""

    weight = 1
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        token = upload_token("locust-poller")
        created = self.client.post(
            "/files/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Authorization": f"Bearer {token}",
                "Upload-Length": "1",
            },
            name="POST /files/",
        )
        self.upload_id = urlsplit(created.headers.get("Location", "")).path.rsplit("/", 1)[-1]
        self.etag = ""

    @task
    def poll(self) -> None:
        if not API_KEY or not self.upload_id:
            return
        headers = {"Authorization": f"Bearer {API_KEY}"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        with self.client.get(
            f"/v1/uploads/{self.upload_id}",
            headers=headers,
            name="GET /v1/uploads/[id]",
            catch_response=True,
        ) as response:
            if response.status_code in (200, 304):
                self.etag = response.headers.get("ETag", self.etag)
                response.success()
            else:
                response.failure(f"status answered {response.status_code}")
