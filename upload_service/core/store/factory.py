"""The one place that turns settings into an upload store.

The server, the pipeline and the sweeper each call `make_store`, so every
process of a deployment reads and writes the same store: the local disk
(`UPLOAD_STORE=local`, the default) or B2 (`UPLOAD_STORE=b2`, for deployments
without a disk shared by the server and the workers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from upload_service.core.settings import Settings
from upload_service.core.store.base import UploadStore
from upload_service.core.store.local import LocalStore

if TYPE_CHECKING:
    from b2sdk.v2 import B2Api

STORE_KINDS = ("local", "b2")


def check_store_settings(settings: Settings) -> None:
    """Fail at start-up, with a message saying what to set, not at the first upload."""
    if settings.upload_store not in STORE_KINDS:
        raise SystemExit(
            f"setting UPLOAD_STORE must be one of {', '.join(STORE_KINDS)}, "
            f"got {settings.upload_store!r}"
        )
    if settings.upload_store == "b2" and not settings.b2_enabled:
        missing = [
            name
            for name, value in (
                ("B2_KEY_ID", settings.b2_key_id),
                ("B2_APPLICATION_KEY", settings.b2_key),
                ("B2_BUCKET", settings.b2_bucket),
            )
            if not value
        ]
        raise SystemExit(f"UPLOAD_STORE=b2 needs the B2 settings: {', '.join(missing)} not set")


def make_store(settings: Settings, api_factory: Callable[[], B2Api] | None = None) -> UploadStore:
    """The store UPLOAD_STORE names; `api_factory` replaces B2 authorization (tests)."""
    check_store_settings(settings)
    if settings.upload_store == "b2":
        # b2sdk is imported only where B2 is configured.
        from upload_service.core.b2client import authorized_api
        from upload_service.core.store.b2 import b2_store_from_settings

        # A request spools at most about one part here before it goes to B2.
        (settings.data_dir / "spool").mkdir(parents=True, exist_ok=True)
        return b2_store_from_settings(settings, api_factory or (lambda: authorized_api(settings)))
    return LocalStore(settings.uploads_dir)
