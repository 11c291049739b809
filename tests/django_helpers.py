"""A minimal Django project around `client_sdk.django`, configured once per test process.

SQLite in a file of its own (not `:memory:`): the live test serves the app from
another thread, and an in-memory database is private to each connection.
`ROOT_URLCONF` is this module, which mounts the app as the docs say.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from conftest import API_KEY, TOKEN_SECRET, free_port
from django.conf import settings

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtZGphbmdvLWFwcC10ZXN0cw=="
SERVER_URL = "http://upload.example.test"

if not settings.configured:
    DATABASE_DIR = tempfile.mkdtemp(prefix="django-tests-")
    atexit.register(shutil.rmtree, DATABASE_DIR, True)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "client_sdk.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(Path(DATABASE_DIR) / "db.sqlite3"),
            }
        },
        MEDIA_UPLOAD={
            "SERVER_URL": SERVER_URL,
            "TOKEN_SECRET": TOKEN_SECRET,
            "API_KEY": API_KEY,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)

# Below: what needs the settings above (models, URL patterns).
from django.contrib.auth.models import User  # noqa: E402
from django.urls import include, path  # noqa: E402

from client_sdk.django.models import TrackedUpload, WebhookDelivery  # noqa: E402

__all__ = ["TrackedUpload", "User", "WebhookDelivery"]

urlpatterns = [path("media-upload/", include("client_sdk.django.urls"))]


def empty_tables() -> None:
    TrackedUpload.objects.all().delete()
    WebhookDelivery.objects.all().delete()
    User.objects.all().delete()


@contextmanager
def received(signal: Any) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every send of `signal` inside the block."""
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    signal.connect(receiver, weak=False)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving_django() -> Iterator[str]:
    """The Django project on a loopback port, in a thread; yields its base URL."""
    from django.core.wsgi import get_wsgi_application

    server: WSGIServer = make_server(
        "127.0.0.1", free_port(), get_wsgi_application(), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def media_upload_settings(**changes: Any) -> dict[str, Any]:
    return {**settings.MEDIA_UPLOAD, **changes}


Hook = Callable[..., dict[str, Any]]
