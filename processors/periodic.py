"""Work a worker process does on a clock, beside its jobs: a daemon thread per task,
started when the worker has booted and stopped before it shuts down.

A tick that fails (Redis away, most often) is logged and the next tick tries again:
these tasks repair what an outage left behind, so they must outlive one.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

from upload_service.core.logs import log_event

log = logging.getLogger("processors.periodic")


class PeriodicTask(Middleware):
    """Runs `tick(broker)` at boot and then every `every` seconds; subclasses say what."""

    name = "periodic"  # the thread's name and the log event's prefix

    def __init__(self, every: float) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def runs_on(self, broker: dramatiq.Broker) -> bool:
        """Whether this task has work on `broker` (some need Redis's own commands)."""
        return self.every > 0

    def tick(self, broker: dramatiq.Broker) -> None:
        raise NotImplementedError

    def pause(self, seconds: float) -> bool:
        """Sleep inside a tick; True when the worker is shutting down meanwhile."""
        return self._stop.wait(seconds)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not self.runs_on(broker):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name=self.name, daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, broker: dramatiq.Broker) -> None:
        while True:
            try:
                self.tick(broker)
            except Exception as exc:
                log_event(log, f"{self.name}.failed", logging.WARNING, error=repr(exc))
            if self._stop.wait(self.every):
                return
