"""b2sdk's RawSimulator served over HTTP: one B2 for several processes.

The service's processes talk to it as to B2 itself, through b2sdk's real HTTP
client: `B2_REALM=http://127.0.0.1:PORT` (a realm may be a URL). This server
turns each B2 native API call back into the simulator's method of the same
name, and rewrites the URLs the simulator hands out (API, download, upload
URLs) to point at itself. Enough of the API for the B2 store and publisher:
JSON calls, uploads of files and parts, downloads by name or id, with ranges.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from b2_helpers import FakeB2
from b2sdk.v2 import RawSimulator
from b2sdk.v2.exception import FileNotPresent, NonExistentBucket

_UPLOAD = "/__upload/"


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


class SimulatorHandler(BaseHTTPRequestHandler):
    sim: RawSimulator
    base: str
    lock: threading.Lock  # the simulator is not meant for concurrent callers

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------
    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        if not headers or "content-length" not in {k.lower() for k in headers}:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        text = json.dumps(value, default=lambda o: sorted(o) if isinstance(o, set) else str(o))
        text = text.replace(RawSimulator.API_URL, self.base)
        text = text.replace(RawSimulator.DOWNLOAD_URL, self.base)
        text = text.replace(RawSimulator.S3_API_URL, self.base)
        self._reply(status, text.encode())

    def _error(self, exc: Exception) -> None:
        if isinstance(exc, FileNotPresent | NonExistentBucket):
            status, code = 404, "not_found"
        else:
            status = int(getattr(exc, "status", 400) or 400)
            code = str(getattr(exc, "code", "bad_request") or "bad_request")
        self._json({"status": status, "code": code, "message": str(exc)}, status)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _rewrite_upload_url(self, result: dict[str, Any]) -> dict[str, Any]:
        result["uploadUrl"] = self.base + _UPLOAD + quote(result["uploadUrl"], safe="")
        return result

    # -- verbs ---------------------------------------------------------------------
    def do_POST(self) -> None:
        try:
            with self.lock:
                self._post()
        except Exception as exc:  # answered as B2 would, never a dropped connection
            self._error(exc)

    def do_GET(self) -> None:
        try:
            with self.lock:
                self._get()
        except Exception as exc:  # answered as B2 would, never a dropped connection
            self._error(exc)

    do_HEAD = do_GET

    def _post(self) -> None:
        path = urlsplit(self.path).path
        auth = self.headers.get("Authorization", "")
        if path.startswith(_UPLOAD):
            return self._upload(unquote(path[len(_UPLOAD) :]), auth)
        endpoint = path.rsplit("/", 1)[-1]
        raw = self._body()
        params = json.loads(raw) if raw else {}
        self._call(endpoint, auth, params)

    def _call(self, endpoint: str, auth: str, params: dict[str, Any]) -> None:
        sim = self.sim
        if endpoint == "b2_authorize_account":
            key_id, _, key = base64.b64decode(auth.split()[1]).decode().partition(":")
            return self._json(sim.authorize_account(self.base, key_id, key))
        method = getattr(sim, endpoint.removeprefix("b2_"))
        accepted = inspect.signature(method).parameters
        kwargs = {_snake(k): v for k, v in params.items() if _snake(k) in accepted}
        result = method(sim.API_URL, auth, **kwargs)
        if endpoint in ("b2_get_upload_url", "b2_get_upload_part_url"):
            result = self._rewrite_upload_url(result)
        self._json(result)

    def _upload(self, url: str, auth: str) -> None:
        data = self._body()
        headers = self.headers
        if "/part/" in url:
            result = self.sim.upload_part(
                url,
                auth,
                int(headers["X-Bz-Part-Number"]),
                len(data),
                headers["X-Bz-Content-Sha1"],
                io.BytesIO(data),
            )
        else:
            info = {
                unquote(k[len("X-Bz-Info-") :]): unquote(v)
                for k, v in headers.items()
                if k.lower().startswith("x-bz-info-")
            }
            result = self.sim.upload_file(
                url,
                auth,
                unquote(headers["X-Bz-File-Name"]),
                len(data),
                headers.get("Content-Type", "b2/x-auto"),
                headers["X-Bz-Content-Sha1"],
                info,
                io.BytesIO(data),
            )
        self._json(result)

    def _get(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/file/") or parts.path.endswith("b2_download_file_by_id"):
            return self._download(parts.path, parts.query)
        endpoint = parts.path.rsplit("/", 1)[-1]
        params: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query):
            params[key] = int(value) if value.isdigit() else value
        self._call(endpoint, self.headers.get("Authorization", ""), params)

    def _download(self, path: str, query: str) -> None:
        url = RawSimulator.DOWNLOAD_URL + path + (f"?{query}" if query else "")
        range_ = None
        wanted = self.headers.get("Range")
        if wanted:
            start, _, end = wanted.removeprefix("bytes=").partition("-")
            range_ = (int(start), int(end))
        token = self.headers.get("Authorization")
        with self.sim.download_file_from_url(token, url, range_) as response:
            body = response.data_bytes
            headers = {k: str(v) for k, v in response.headers.items()}
        headers["Content-Length"] = str(len(body))
        headers.pop("content-length", None)
        self._reply(206 if range_ else 200, body, headers)


@contextmanager
def served_b2(fake: FakeB2) -> Iterator[str]:
    """Serve the fake account's simulator; yields the realm URL to give B2_REALM."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimulatorHandler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    handler = type(
        "Handler",
        (SimulatorHandler,),
        {"sim": fake.sim, "base": base, "lock": threading.Lock()},
    )
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


def account_keys(fake: FakeB2) -> tuple[str, str]:
    """The key id and key of the fake account (what B2_KEY_ID and B2_APPLICATION_KEY hold)."""
    info = fake.api.account_info
    return info.get_application_key_id(), info.get_application_key()
