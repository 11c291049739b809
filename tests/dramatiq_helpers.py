"""Test helpers for Dramatiq's clock: delays of hours, checked without waiting for them."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import dramatiq.brokers.redis
import dramatiq.rate_limits.bucket
import dramatiq.worker
import pytest
import redis


class DramatiqClock:
    """Dramatiq's clock, stopped: a delayed message comes due only when the test moves it on.

    It stands in for the clock where Dramatiq reads it: the Redis broker (a delayed
    message's `eta`, heartbeats), the worker (when a delayed message is due) and
    the bucket rate limiter. `monkeypatch` fails loudly if Dramatiq moved them.
    The rest of the process (HTTP, signatures, the logs) keeps real time.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now_ms = int(time.time() * 1000)
        monkeypatch.setattr(dramatiq.brokers.redis, "current_millis", self.current_millis)
        monkeypatch.setattr(dramatiq.worker, "current_millis", self.current_millis)
        monkeypatch.setattr(dramatiq.rate_limits.bucket, "time", SimpleNamespace(time=self.time))

    def current_millis(self) -> int:
        return self.now_ms

    def time(self) -> float:
        return self.now_ms / 1000

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)

    def advance_to(self, eta_ms: int) -> None:
        self.now_ms = max(self.now_ms, eta_ms)


def queued(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Messages in a Dramatiq Redis queue (`<name>.DQ` for the delayed ones), decoded,
    including those a worker holds but has not acknowledged yet."""
    return [json.loads(body) for body in client.hvals(f"dramatiq:{queue}.msgs")]
