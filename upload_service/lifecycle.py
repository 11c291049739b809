"""The server's reactions to tus events: status records, webhooks, the pipeline."""

from __future__ import annotations

import logging

from . import metrics
from .blocking import run_blocking
from .events import emit
from .jobs import JobQueue
from .logs import log_event
from .status import StatusStore, new_record
from .store.base import UploadInfo

log = logging.getLogger("upload_service.lifecycle")


class ServiceHooks:
    def __init__(self, status: StatusStore, jobs: JobQueue, webhooks: bool) -> None:
        self.status = status
        self.jobs = jobs
        self.webhooks = webhooks

    async def created(self, info: UploadInfo) -> None:
        metrics.UPLOADS_CREATED.inc()
        await run_blocking(self._created, info)
        log_event(log, "upload.created", upload_id=info.id, owner=info.owner, length=info.length)

    def _created(self, info: UploadInfo) -> None:
        record = self.status.put(new_record(info))
        emit(self.jobs, self.webhooks, "upload.created", record)

    async def progressed(self, info: UploadInfo) -> None:
        if not info.finished:
            await run_blocking(self._progressed, info)

    def _progressed(self, info: UploadInfo) -> None:
        self.status.update(info.id, offset=info.offset, length=info.length)

    async def finished(self, info: UploadInfo) -> None:
        metrics.UPLOADS_FINISHED.inc()
        await run_blocking(self._finished, info)
        log_event(log, "upload.completed", upload_id=info.id, length=info.length)

    def _finished(self, info: UploadInfo) -> None:
        record = self.status.update(
            info.id, state="uploaded", offset=info.offset, length=info.length
        )
        # One message starts the pipeline; the response does not wait for it.
        # Partial uploads are pieces of a final one, not media on their own.
        if info.concat != "partial":
            self.jobs.send("process_upload", info.id)
        emit(self.jobs, self.webhooks, "upload.completed", record)

    async def terminated(self, info: UploadInfo) -> None:
        await run_blocking(self._terminated, info)
        log_event(log, "upload.terminated", upload_id=info.id)

    def _terminated(self, info: UploadInfo) -> None:
        try:
            record = self.status.update(info.id, state="terminated", offset=info.offset)
        except KeyError:
            return
        emit(self.jobs, self.webhooks, "upload.terminated", record)
