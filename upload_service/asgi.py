"""The ASGI entry point uvicorn imports (one app per worker process)."""

from .app import create_app
from .settings import Settings

app = create_app(Settings.from_env())
