"""The server's reactions to tus events: status records, webhooks, the pipeline."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from upload_service.core import metrics
from upload_service.core.errors import Locked
from upload_service.core.events import emit
from upload_service.core.handoff import PendingHandoffs
from upload_service.core.jobs import JobQueue
from upload_service.core.locks import Locker
from upload_service.core.logs import log_event
from upload_service.core.progress_pace import ProgressPace
from upload_service.core.quotas import Quotas
from upload_service.core.status import Overtaken, Record, StatusCache, StatusStore, new_record
from upload_service.core.store.base import UploadInfo
from upload_service.core.threads import run_blocking
from upload_service.core.upload_eta import UploadSpeeds

log = logging.getLogger("upload_service.core.lifecycle")


class ServiceHooks:
    """Each event: the status file (a worker thread), then its cache (the event loop),
    then what is announced of it (webhooks, the pipeline), in that order: whoever
    hears of an event reads a status that already shows it, and the pipeline's
    first status write can never be overtaken by this one's cache refresh.

    An upload's offset is recorded at the pace `progress_interval` sets
    (core.progress_pace); a late record takes the upload's lock from `locker`,
    as an append does, so the order above holds for it too.
    """

    def __init__(
        self,
        status: StatusStore,
        cache: StatusCache,
        jobs: JobQueue,
        webhooks: bool,
        locker: Locker,
        quotas: Quotas | None = None,
        progress_interval: float = 0.0,
    ) -> None:
        self.quotas = quotas  # counts each user's unfinished uploads
        self.status = status
        self.cache = cache
        self.jobs = jobs
        self.webhooks = webhooks
        self.locker = locker
        self.handoffs = PendingHandoffs()
        self.speeds = UploadSpeeds()
        self.pace = ProgressPace(progress_interval, self._progressed_late)

    async def created(self, info: UploadInfo) -> None:
        metrics.UPLOADS_CREATED.inc()
        record = new_record(info)
        body = await run_blocking(self.status.write_file, record)
        await self.cache.publish(info.id, body)
        if self.quotas is not None and not info.finished:
            await self.quotas.started(info.owner, info.id)
        if self.webhooks:
            await run_blocking(emit, self.jobs, True, "upload.created", record)
        log_event(log, "upload.created", upload_id=info.id, owner=info.owner, length=info.length)

    async def progressed(self, info: UploadInfo, broke_off: bool = False) -> None:
        if info.finished:
            return  # finished() records it
        if not self.pace.due(info.id, at_once=broke_off):
            self.pace.later(info.id, info.offset, info.length)
            return
        progress = self.speeds.progress(info.id, info.offset, info.length)
        await self._update(info.id, offset=info.offset, length=info.length, progress=progress)

    async def _progressed_late(self, upload_id: str, offset: int, length: int | None) -> None:
        try:
            async with self.locker.lock(upload_id, brief=True):
                progress = self.speeds.progress(upload_id, offset, length)
                await self._update(
                    upload_id,
                    offset=offset,
                    length=length,
                    progress=progress,
                    write=self.status.update_uploading_file,
                )
        except Locked:
            pass  # an append holds the upload: it records its own offset when it ends
        except (Overtaken, KeyError):
            pass  # completed, ended or moved on meanwhile: that record is newer

    async def aclose(self) -> None:
        """On shutdown: the offsets still waiting for their late record are recorded."""
        await self.pace.flush()

    async def finished(self, info: UploadInfo) -> None:
        """The file says `uploaded` first; the cache and the job follow, now or, if
        Redis is away, as soon as it is back (core.handoff): the upload is complete."""
        metrics.UPLOADS_FINISHED.inc()
        self.speeds.forget(info.id)
        self.pace.forget(info.id)
        record, body = await run_blocking(
            functools.partial(
                self.status.update_file,
                info.id,
                state="uploaded",
                offset=info.offset,
                length=info.length,
                progress={"stage": "upload", "percent": 100.0, "eta_s": 0},
            )
        )
        if self.quotas is not None:
            await self.quotas.ended(info.owner, info.id)

        async def hand_off() -> None:
            await self.cache.publish(info.id, body)
            await run_blocking(self._announce_finished, info, record)

        await self.handoffs.run(info.id, hand_off)
        log_event(log, "upload.completed", upload_id=info.id, length=info.length)

    def _announce_finished(self, info: UploadInfo, record: Record) -> None:
        # One message starts the pipeline (its work never runs in the request).
        # Partial uploads are pieces of a final one, not media on their own.
        if info.concat != "partial":
            self.jobs.send("process_upload", info.id)
        emit(self.jobs, self.webhooks, "upload.completed", record)

    async def terminated(self, info: UploadInfo) -> None:
        self.speeds.forget(info.id)
        self.pace.forget(info.id)
        try:
            record = await self._update(
                info.id, state="terminated", offset=info.offset, progress=None, outputs={}
            )
        except KeyError:  # it had no status record: nothing to refresh or announce
            record = None
        if self.quotas is not None:
            await self.quotas.ended(info.owner, info.id)
        if record is not None and self.webhooks:
            await run_blocking(emit, self.jobs, True, "upload.terminated", record)
        if info.finished and info.concat != "partial":
            # It may be processing or published: a worker stops and unpublishes it.
            await run_blocking(self.jobs.send, "withdraw_upload", info.id)
        log_event(log, "upload.terminated", upload_id=info.id)

    async def discarded(self, info: UploadInfo) -> None:
        # Removing files works on a full disk; a lost Redis leaves a cached body
        # that the next status read of this id (none: nobody knows it) would serve.
        self.pace.forget(info.id)
        try:
            await run_blocking(self.status.remove, info.id)
            if self.quotas is not None:
                await self.quotas.ended(info.owner, info.id)
        except Exception as exc:
            log_event(
                log, "upload.discard_failed", logging.WARNING, upload_id=info.id, error=str(exc)
            )
        log_event(log, "upload.discarded", upload_id=info.id)

    async def _update(
        self,
        upload_id: str,
        write: Callable[..., tuple[Record, bytes]] | None = None,
        **changes: Any,
    ) -> Record:
        """`changes` written to the state (by `write`, `update_file` if None), then cached."""
        record, body = await run_blocking(
            functools.partial(write or self.status.update_file, upload_id, **changes)
        )
        await self.cache.publish(upload_id, body)
        return record
