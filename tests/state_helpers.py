"""The state implementations side by side, for the contract suite and the API tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from upload_service.core.settings import Settings
from upload_service.core.state import State, make_state
from upload_service.core.status import iso

STATE_KINDS = ("files", "postgres")


def state_settings(settings: Settings, kind: str, postgres_url: str) -> Settings:
    """`settings` with STATE_URL set for PostgreSQL, unset for files."""
    return settings.with_changes(state_url=postgres_url if kind == "postgres" else None)


def open_state(kind: str, data_dir: Path, postgres_url: str) -> State:
    settings = Settings(data_dir=data_dir, state_url=postgres_url if kind == "postgres" else None)
    return make_state(settings)


def record(
    upload_id: str, owner: str = "user-1", state: str = "uploading", **extra: Any
) -> dict[str, Any]:
    now = iso()
    return {
        "id": upload_id,
        "owner": owner,
        "state": state,
        "offset": 0,
        "length": 10,
        "metadata": {},
        "meta": {},
        "progress": None,
        "media": None,
        "outputs": {},
        "error": None,
        "created_at": extra.pop("created_at", now),
        "updated_at": now,
        **extra,
    }
