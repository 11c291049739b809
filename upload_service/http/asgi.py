"""The ASGI entry point uvicorn imports (one app per worker process)."""

from upload_service.core import logs
from upload_service.core.orphans import die_with_parent
from upload_service.core.settings import Settings
from upload_service.http.app import create_app

# A worker process of a several-process `serve` stops when its supervisor dies.
die_with_parent()
settings = Settings.from_env()
if not logs.configured():
    # A worker of `serve` with several processes starts afresh (spawned, not
    # forked): nothing of the parent's logging setup reaches it.
    logs.configure(settings.log_level, settings.log_json)
app = create_app(settings)
