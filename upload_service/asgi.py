"""The ASGI entry point uvicorn imports (one app per worker process)."""

from . import logs
from .app import create_app
from .settings import Settings

settings = Settings.from_env()
if not logs.configured():
    # A worker of `serve` with several processes starts afresh (spawned, not
    # forked): nothing of the parent's logging setup reaches it.
    logs.configure(settings.log_level, settings.log_json)
app = create_app(settings)
