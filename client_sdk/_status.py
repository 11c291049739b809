"""The status API for the main backend (API key) or an uploader (its own token).

Polls are conditional: the client remembers each record's ETag and sends
If-None-Match, so an unchanged record costs a 304 with no body.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import httpx

from ._exceptions import NetworkError, ProcessingFailed, WaitTimeout, error_for_status
from ._retry import RetryPolicy

Record = dict[str, Any]
FINAL_STATES = frozenset({"ready", "failed", "terminated", "expired"})
# The media plays from `outputs.hls` (the smallest rendition at first) in these.
PLAYABLE_STATES = frozenset({"playable", "ready"})
MAX_BATCH = 100


def describe_progress(record: Record) -> str:
    """`progress` in words, as a person reads it: "transcode 42%, ready in about 2 min"."""
    progress = record.get("progress") or {}
    if not progress:
        return ""
    text = f"{progress.get('stage')} {progress.get('percent') or 0:.0f}%"
    eta = progress.get("eta_s")
    if isinstance(eta, (int, float)) and eta > 0 and record.get("state") not in FINAL_STATES:
        goal = "uploaded" if progress.get("stage") == "upload" else "ready"
        text += f", {goal} in about {_duration(eta)}"
    return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


class StatusClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy(retries=3, backoff=0.5, max_backoff=5.0)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        # url -> (etag, parsed body): a 304 hands back the remembered body.
        self._cache: dict[str, tuple[str, Any]] = {}
        self.not_modified = 0  # how many polls a 304 answered (for callers and tests)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StatusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        """GET with If-None-Match; None for a 404."""
        key = str(self._http.build_request("GET", path, params=params).url)
        cached = self._cache.get(key)
        headers = {"If-None-Match": cached[0]} if cached else {}
        attempt = 0
        while True:
            try:
                resp = self._http.get(path, params=params, headers=headers)
            except httpx.TransportError as exc:
                if attempt >= self.retry.retries:
                    raise NetworkError(f"cannot reach {self.base_url}: {exc}") from exc
            else:
                if resp.status_code < 500 or attempt >= self.retry.retries:
                    break
            self.retry.sleep(attempt)
            attempt += 1
        if resp.status_code == 304 and cached:
            self.not_modified += 1
            return cached[1]
        if resp.status_code == 404:
            self._cache.pop(key, None)
            return None
        if resp.status_code != 200:
            raise error_for_status(resp.status_code, f"GET {path} failed", resp.text[:500])
        body = resp.json()
        etag = resp.headers.get("etag")
        if etag:
            self._cache[key] = (etag, body)
        return body

    def get(self, upload_id: str) -> Record | None:
        """The upload's status record, or None if there is no such upload (for this caller)."""
        record = self._get(f"/v1/uploads/{upload_id}")
        return dict(record) if record is not None else None

    def get_many(self, ids: Iterable[str]) -> dict[str, Record]:
        """Records by id, fetched 100 at a time; unknown ids are left out."""
        unique = list(dict.fromkeys(ids))
        found: dict[str, Record] = {}
        for start in range(0, len(unique), MAX_BATCH):
            batch = unique[start : start + MAX_BATCH]
            body = self._get("/v1/uploads", params={"ids": ",".join(batch)})
            for record in (body or {}).get("uploads", []):
                found[record["id"]] = dict(record)
        return found

    def list_page(
        self,
        *,
        owner: str | None = None,
        states: Iterable[str] = (),
        created_after: datetime | str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Record], str | None]:
        """One page of the listing (API key only), oldest first: (records, next cursor);
        the cursor is None on the last page."""
        params: dict[str, str] = {"limit": str(limit)}
        if owner is not None:
            params["owner"] = owner
        if states:
            params["state"] = ",".join(states)
        if created_after is not None:
            params["created_after"] = (
                created_after.isoformat() if isinstance(created_after, datetime) else created_after
            )
        if cursor:
            params["cursor"] = cursor
        body = self._get("/v1/uploads", params=params) or {}
        return [dict(r) for r in body.get("uploads", [])], body.get("next_cursor")

    def list(
        self,
        *,
        owner: str | None = None,
        states: Iterable[str] = (),
        created_after: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[Record]:
        """Every upload matching the filters, oldest first, fetched a page at a time."""
        wanted = tuple(states)
        cursor: str | None = None
        while True:
            records, cursor = self.list_page(
                owner=owner,
                states=wanted,
                created_after=created_after,
                cursor=cursor,
                limit=page_size,
            )
            yield from records
            if cursor is None:
                return

    def wait(
        self,
        upload_id: str,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        *,
        until: Iterable[str] = FINAL_STATES,
        raise_on_failure: bool = False,
        on_change: Any = None,
    ) -> Record:
        """Poll until the upload reaches one of `until` (by default a final state).

        `on_change(record)` is called whenever the record changes. Raises WaitTimeout
        after `timeout` seconds, NotFound (a Gone) if the upload disappears, and ProcessingFailed
        for `failed` when `raise_on_failure` is set.
        """
        targets = frozenset(until)
        deadline = time.monotonic() + timeout
        last: Record | None = None
        while True:
            record = self.get(upload_id)
            if record is None:
                raise error_for_status(404, f"upload {upload_id} not found")
            if record != last and on_change is not None:
                on_change(record)
            last = record
            if record.get("state") in targets:
                if raise_on_failure and record.get("state") == "failed":
                    error = record.get("error") or {}
                    raise ProcessingFailed(
                        f"processing failed: {error.get('code')}: {error.get('message')}"
                    )
                return record
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"upload {upload_id} still {record.get('state')!r} after {timeout}s"
                )
            time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))

    def wait_playable(self, upload_id: str, timeout: float = 600.0, **options: Any) -> Record:
        """Poll until the media can be played (`playable` or `ready`) or will never be."""
        until = PLAYABLE_STATES | FINAL_STATES
        return self.wait(upload_id, timeout, until=until, **options)
