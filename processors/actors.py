"""The module `upload-service worker` loads: the broker first, then every actor.

    process_upload(upload_id)           queue "media"        the pipeline
    process_upload_exhausted(msg, info) queue "media"        retries ran out
    withdraw_upload(upload_id)          queue "media"        after a DELETE: processors.withdraw
    deliver_webhook(event, ...)         queue "webhooks"     processors.webhooks
    sweep_expired(...)                  queue "maintenance"  processors.sweeper

The server never imports this: it sends plain messages by actor name
(`upload_service.core.jobs`), so the names and queues here must match ACTOR_QUEUES.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from typing import Any

import dramatiq
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from upload_service.core import logs
from upload_service.core.jobs import ACTOR_QUEUES, PIPELINE_QUEUE, DramatiqJobQueue
from upload_service.core.logs import log_event
from upload_service.core.settings import Settings
from upload_service.core.status import StatusStore
from upload_service.core.store.factory import make_store

from .broker import setup_broker

settings = Settings.from_env()
broker = setup_broker(settings)
# UPLOAD_STORE, as the server has it; built now so a bad setting stops the worker at start.
store = make_store(settings)
# The Dramatiq CLI installs plain stream handlers (they route worker output to
# the main process); give them our formatter so event fields are not lost.
# Subclasses (pytest's capture handlers, for one) are left alone.
for _handler in logging.getLogger().handlers:
    if type(_handler) is logging.StreamHandler:
        _handler.setFormatter(logs.JsonFormatter() if settings.log_json else logs.TextFormatter())

# Imported only now, so that anything declaring actors binds to this broker.
from . import pipeline  # noqa: E402
from .failures import MediaError  # noqa: E402
from .publish import make_publisher  # noqa: E402
from .withdraw import withdraw  # noqa: E402
from .workdir import sweep_stale  # noqa: E402

# The actor's own limit is only a backstop; the real one scales with the media
# (ffmpeg's time-out, `pipeline.transcode_timeout`), which is not known until probed.
BACKSTOP_TIME_LIMIT_MS = 12 * 3600 * 1000
log = logging.getLogger("processors.actors")
OPTIONAL_ACTOR_MODULES = ("processors.webhooks", "processors.sweeper")


@functools.cache
def context() -> pipeline.PipelineContext:
    # Built on first use, inside the worker process that runs the actor.
    return pipeline.PipelineContext(
        settings=settings,
        status=StatusStore(
            settings.status_dir,
            Redis.from_url(settings.redis_url, retry=Retry(ExponentialBackoff(cap=2.0), 5)),
        ),
        jobs=DramatiqJobQueue(broker),
        publisher=make_publisher(settings),
        store=store,
    )


@dramatiq.actor(
    actor_name="process_upload",
    queue_name=PIPELINE_QUEUE,
    max_retries=settings.process_max_retries,
    min_backoff=int(settings.process_min_backoff * 1000),
    max_backoff=3600 * 1000,
    time_limit=BACKSTOP_TIME_LIMIT_MS,
    throws=(MediaError,),
    on_retry_exhausted="process_upload_exhausted",
)
def process_upload(upload_id: str) -> None:
    pipeline.process_upload(upload_id, context())


@dramatiq.actor(actor_name="process_upload_exhausted", queue_name=PIPELINE_QUEUE, max_retries=20)
def process_upload_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    upload_id = message["args"][0]
    trace = message.get("options", {}).get("traceback") or ""
    reason = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
    pipeline.mark_exhausted(context(), upload_id, reason)


@dramatiq.actor(
    actor_name="withdraw_upload",
    queue_name=PIPELINE_QUEUE,
    # Retried while the upload's job still runs (it stops within seconds).
    max_retries=30,
    min_backoff=1000,
    max_backoff=30_000,
)
def withdraw_upload(upload_id: str) -> None:
    withdraw(upload_id, context())


def _declare_optional_actors() -> list[str]:
    """Import the actor modules other parts of the service provide, when present."""
    loaded = []
    for name in OPTIONAL_ACTOR_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)  # an import error here is a real error: let it out
            loaded.append(name)
    return loaded


loaded_modules = _declare_optional_actors()
# Scratch dirs of jobs that were killed and never redone; older than any job can run.
swept = sweep_stale(settings.work_dir, older_than=2 * BACKSTOP_TIME_LIMIT_MS / 1000)
if swept:
    log_event(log, "worker.stale_work_dirs_removed", count=len(swept))
missing = [a for a in ACTOR_QUEUES if a not in broker.actors]
if missing:
    log_event(log, "worker.actors_missing", logging.WARNING, actors=",".join(missing))
