"""Numbered SQL files (`NNNN_name.sql`), applied in order by `upload-service migrate`.

`schema_migrations` records which ones ran. A run is one transaction under an
advisory lock: all that was missing is applied or none of it, and two
`migrate` commands started at once apply every file exactly once. The server
and the workers only check: they refuse to start on a schema older or newer
than the files they carry, with the command that fixes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from upload_service.core.state.base import SchemaNotCurrent

# Any constant: it serialises `migrate` runs against one database.
MIGRATE_LOCK = 0x75706C64

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    return max((m.version for m in migrations()), default=0)


def _ensure_table(conn: Any) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied_version(conn: Any) -> int:
    """The newest migration the database has, 0 for a fresh one."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])


def migrate(conn: Any) -> list[str]:
    """Apply what is missing; the names applied. `conn` is a psycopg connection."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        _ensure_table(conn)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for migration in migrations():
            if migration.version in done:
                continue
            with conn.transaction():  # a savepoint per file
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied.append(migration.name)
    return applied


def check_current(conn: Any, where: str) -> None:
    have, want = applied_version(conn), latest_version()
    if have < want:
        raise SchemaNotCurrent(
            f"the state database at {where} has schema version {have}, this code needs "
            f"{want}: run `upload-service migrate` first"
        )
    if have > want:
        raise SchemaNotCurrent(
            f"the state database at {where} has schema version {have}, newer than this "
            f"code's {want}: run the release that migrated it"
        )
