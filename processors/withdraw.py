"""After a DELETE: nothing of the upload stays published, and it ends `terminated`.

The server answers a DELETE at once and sends `withdraw_upload`. A job that
is still running stops by itself (its next status write finds the upload
terminated, see `pipeline`), but two things need a worker afterwards:
- outputs published before the DELETE (an upload already `ready`) must go,
  from the local media dir or from B2;
- a job's last write can cross the DELETE's (both read the record, then both
  write it), and the record then says `ready` for a deleted upload.

So the withdrawal waits for the upload's pipeline lock (a running job keeps
it: Dramatiq retries the message until the job is gone), unpublishes, and
puts the record back to `terminated` if a crossing write took it away, with
`upload.terminated` sent again so that it stays the last webhook.
"""

from __future__ import annotations

import contextlib
import logging

from upload_service.core.events import emit
from upload_service.core.logs import log_event
from upload_service.core.status import ENDED

from .failures import TransientError
from .joblock import JobLock, lock_ttl
from .pipeline import PipelineContext
from .workdir import remove_job_dir

log = logging.getLogger("processors.withdraw")


class PipelineBusy(TransientError):
    """A job still holds the upload's lock: try again once it stopped."""


def withdraw(upload_id: str, ctx: PipelineContext) -> None:
    redis = ctx.status.redis
    guard: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if redis is not None:
        lock = JobLock(redis, upload_id, lock_ttl(ctx.settings.worker_heartbeat_timeout))
        if not lock.acquire():
            raise PipelineBusy(f"upload {upload_id}: its pipeline is still running")
        guard = lock
    with guard:
        ctx.publisher.unpublish(upload_id)
        # A job that died (or waits for a retry) kept its checkpoint: no redo will use it.
        remove_job_dir(ctx.settings.work_dir, upload_id)
        record = ctx.status.get(upload_id)
        if record is not None and record["state"] not in ENDED:
            # A job's write crossed the DELETE's: the DELETE wins.
            record = ctx.status.update(upload_id, state="terminated", outputs={})
            emit(ctx.jobs, ctx.webhooks, "upload.terminated", record)
        log_event(log, "pipeline.withdrawn", upload_id=upload_id)
