"""The one place that turns STATE_URL into a state, and checks it at start-up."""

from __future__ import annotations

import threading

from upload_service.core.settings import Settings
from upload_service.core.state.base import SchemaNotCurrent, State
from upload_service.core.state.files import FileState

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(settings: Settings) -> bool:
    return (settings.state_url or "").startswith(POSTGRES_SCHEMES)


def make_state(settings: Settings) -> State:
    """Files under UPLOAD_DATA_DIR without STATE_URL; PostgreSQL with one."""
    if not settings.state_url:
        return FileState(settings.data_dir)
    if not is_postgres(settings):
        raise SystemExit(
            "setting STATE_URL must be a postgresql://user@host/db URL (or empty for "
            f"local files), got {settings.state_url.split(':', 1)[0]}:..."
        )
    # psycopg is imported only where PostgreSQL is configured.
    from upload_service.core.state.postgres import PostgresState

    return PostgresState(settings.state_url, max_connections=settings.state_pool_size)


def check_state_settings(settings: Settings) -> None:
    """Refuse to start, with what to do, on a state that is not reachable or not current.

    Files need nothing: the directories are made as they are used.
    """
    if not settings.state_url:
        return
    state = make_state(settings)
    try:
        state.check_schema()
    except SchemaNotCurrent as exc:
        raise SystemExit(f"cannot start: {exc}") from None
    except Exception as exc:  # psycopg's errors, the pool's timeout: unreachable
        from upload_service.core.state.postgres import safe_location

        raise SystemExit(
            f"cannot start: the state database at {safe_location(settings.state_url)} "
            f"does not answer ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        state.close()


_shared: dict[tuple[str | None, str, int], State] = {}
_shared_lock = threading.Lock()


def shared_state(settings: Settings) -> State:
    """One state per process and setting: a PostgreSQL pool is opened once, not per call
    (the webhook actor and the sweeps ask for it on every message)."""
    key = (settings.state_url, str(settings.data_dir.resolve()), settings.state_pool_size)
    with _shared_lock:
        state = _shared.get(key)
        if state is None:
            state = _shared[key] = make_state(settings)
        return state
