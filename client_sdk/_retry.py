"""Backoff for transient failures: network errors, 5xx, 423 (locked), 409 (moved on)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

# 409: the offset moved under us (a retried PATCH had partly arrived): HEAD and go on.
# 423: another request still holds the upload (e.g. a killed client's last PATCH).
# 460: a chunk was damaged in transit: sending it again is the cure.
RETRY_STATUSES = frozenset({409, 423, 460, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    # 8 tries span about a minute: enough for a restarted server's stale lock to lapse.
    retries: int = 8
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter, so many clients do not retry in step."""
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def sleep(self, attempt: int) -> None:
        time.sleep(self.delay(attempt))
