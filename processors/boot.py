"""A worker process's start-up work, run by Dramatiq's boot hooks rather than at import.

Importing `processors.actors` only reads the settings, makes the Redis client
and the broker, and declares the actors: what Dramatiq needs before it can
start a worker. Whatever touches the disk, B2 or the logging set-up waits for
the process to boot:

    after_process_boot   (the actors are declared)  die with the supervisor; our formatter
                                                    on Dramatiq's log handlers
    before_worker_boot   (no message taken yet)     build the actors' shared parts (the store,
                                                    the publisher), remove stale work dirs

A store or publisher that cannot be built stops the process before it takes a
message, with the reason in the log, as a bad setting should.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import dramatiq
from dramatiq.middleware import Middleware, MiddlewareError

from upload_service.core import logs
from upload_service.core.logs import log_event
from upload_service.core.orphans import die_with_parent
from upload_service.core.settings import Settings

from .workdir import sweep_stale

log = logging.getLogger("processors.boot")


class WorkerBootFailed(MiddlewareError):
    """Raised from `before_worker_boot`: Dramatiq lets only these stop a worker's start."""


class WorkerBoot(Middleware):
    def __init__(
        self,
        settings: Settings,
        prepare: Callable[[], object],
        stale_after: float,
        expected_actors: Iterable[str] = (),
    ) -> None:
        """`prepare` builds what the actors share; `stale_after`: seconds after which
        a work dir is a killed job's leftover (longer than any job can run)."""
        self.settings = settings
        self.prepare = prepare
        self.stale_after = stale_after
        self.expected_actors = tuple(expected_actors)

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # A worker process stops when the `worker` supervisor dies (SIGKILLed, say):
        # else it would take jobs with nobody to stop or restart it.
        die_with_parent()
        # The Dramatiq CLI installs plain stream handlers (they route worker output
        # to the main process); give them our formatter so event fields are not
        # lost. Subclasses (pytest's capture handlers, for one) are left alone.
        formatter = logs.JsonFormatter() if self.settings.log_json else logs.TextFormatter()
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                handler.setFormatter(formatter)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            self.prepare()
        except Exception as exc:  # the process's traceback follows in the log
            log_event(log, "worker.boot_failed", logging.CRITICAL, error=repr(exc))
            raise WorkerBootFailed(f"cannot start the worker: {exc}") from exc
        swept = sweep_stale(self.settings.work_dir, older_than=self.stale_after)
        if swept:
            log_event(log, "worker.stale_work_dirs_removed", count=len(swept))
        missing = [name for name in self.expected_actors if name not in broker.actors]
        if missing:
            log_event(log, "worker.actors_missing", logging.WARNING, actors=",".join(missing))
