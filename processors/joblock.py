"""A per-upload processing lock: one pipeline run per upload at a time.

Dramatiq delivers at least once, and the sweeper re-sends stuck jobs, so two
`process_upload` messages for one upload can run at once in two worker
threads or processes; both would work in the same `work_dir/<id>`. The first
to `SET NX` the key `pipeline-lock:<id>` runs; the other returns at once.

The key lives `ttl` seconds and a daemon thread renews it while the job runs,
so a long transcode keeps it, while the lock of a SIGKILLed worker lapses
within one TTL. A key that Redis lost (a restart without persistence) is put
back at the next renewal, unless another run took it meanwhile: a live job
shows a holder within one renewal of Redis' return. That TTL must stay below
Dramatiq's WORKER_HEARTBEAT_TIMEOUT: the dead worker's message is requeued
only then, and its redo must find the lock gone (see `lock_ttl`). Renewal
and release check the holder's random token in a Lua script
(`upload_service.core.redis_scripts`, shared with the upload locks), so a
holder whose key lapsed never frees another's.

Synchronous (redis-py), as workers run actors in threads. Not to be confused
with `upload_service.core.locks`, the async lock of a tus upload's PATCHes.
"""

from __future__ import annotations

import logging
import secrets
import threading
from types import TracebackType

from redis import Redis
from redis.exceptions import RedisError

from upload_service.core.logs import log_event
from upload_service.core.redis_scripts import lock_scripts

log = logging.getLogger("processors.joblock")

KEY_PREFIX = "pipeline-lock:"
MAX_TTL = 30.0
# Seconds between renewals while Redis does not answer: a lock that Redis lost
# in a restart is put back within about this long of its return.
RETRY_SOON = 1.0


def lock_ttl(heartbeat_timeout: float) -> float:
    """The lock's TTL: 30 s, but at most half the broker's heartbeat timeout.

    A dead worker's message comes back after its heartbeat times out (less
    the ~1 s between heartbeats); its lock must have lapsed by then.
    """
    return min(MAX_TTL, heartbeat_timeout / 2)


class JobLock:
    """`pipeline-lock:<name>`, held by this instance's random token."""

    def __init__(
        self, redis: Redis, name: str, ttl: float = MAX_TTL, renew_every: float | None = None
    ) -> None:
        self.redis = redis
        self.scripts = lock_scripts(redis)
        self.key = KEY_PREFIX + name
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(1, int(ttl * 1000))
        # Three renewals per TTL: one late or failed renewal does not lose the lock.
        self.renew_every = renew_every if renew_every is not None else ttl / 3
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.held = False

    def acquire(self) -> bool:
        """Take the lock unless someone holds it; True when taken (renewed from then on)."""
        if not self.redis.set(self.key, self.token, px=self.ttl_ms, nx=True):
            return False
        self.held = True
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"joblock-{self.key}", daemon=True
        )
        self._renewer.start()
        return True

    def _renew_loop(self) -> None:
        wait = self.renew_every
        while not self._stop.wait(wait):
            wait = self.renew_every
            try:
                renewed = self._renew_or_retake()
            except RedisError as exc:  # a blip: the next renewal may still be in time
                log_event(log, "joblock.renew_failed", logging.WARNING, key=self.key, error=exc)
                wait = min(RETRY_SOON, self.renew_every)  # back as soon as Redis is
                continue
            if not renewed:
                # Another run holds it (this process stalled past the TTL and a redo
                # began): the pipeline's idempotency has to cover the overlap.
                self.held = False
                log_event(log, "joblock.lost", logging.WARNING, key=self.key)
                return

    def _renew_or_retake(self) -> bool:
        if self.scripts.renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        # Gone: Redis restarted empty (or failed over without it), or the key lapsed.
        # Unless another run took it meanwhile, this one is still the only run:
        # the lock is put back, and a look for lost jobs after a Redis restart
        # (processors.lost_jobs) sees a live holder.
        if not self.redis.set(self.key, self.token, px=self.ttl_ms, nx=True):
            return False
        log_event(log, "joblock.retaken", logging.WARNING, key=self.key)
        return True

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if not self.held:
            return
        self.held = False
        try:
            self.scripts.release(keys=[self.key], args=[self.token])
        except RedisError as exc:  # it lapses within the TTL anyway
            log_event(log, "joblock.release_failed", logging.WARNING, key=self.key, error=exc)

    def __enter__(self) -> JobLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
