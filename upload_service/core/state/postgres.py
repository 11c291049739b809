"""The state in PostgreSQL (`STATE_URL=postgresql://...`): for several machines.

psycopg 3 with a small connection pool per process; every call is synchronous
(workers call it directly, the server from its thread pools, as it does with
files). The schema comes from the numbered files in `migrations/`.

A change is `SELECT ... FOR UPDATE`, the mutation in Python, then `UPDATE` in
one transaction: a second change of the same upload waits for the first to
commit and then reads what it wrote, on whatever machine either runs.
`version` counts the writes of a record, so a reader can tell which of two
bodies is newer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit

from psycopg_pool import ConnectionPool

from upload_service.core.state import migrations
from upload_service.core.state.base import (
    UNFINISHED,
    ListQuery,
    Mutation,
    Page,
    Record,
    assemble_history,
    page_of,
    parse_iso,
    stamp,
)

_UPSERT = (
    "INSERT INTO upload_status (id, owner, state, created_at, updated_at, body)"
    " VALUES (%(id)s, %(owner)s, %(state)s, %(created_at)s, %(updated_at)s, %(body)s)"
    " ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, state = excluded.state,"
    " updated_at = excluded.updated_at, body = excluded.body,"
    " version = upload_status.version + 1"
)


def _columns(record: Record, body: bytes) -> dict[str, Any]:
    return {
        "id": record["id"],
        "owner": str(record.get("owner") or ""),
        "state": str(record.get("state") or ""),
        "created_at": parse_iso(record.get("created_at") or record["updated_at"]),
        "updated_at": parse_iso(record["updated_at"]),
        "body": body.decode(),
    }


def safe_location(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class PostgresStatusRecords:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def read(self, upload_id: str) -> bytes | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT body FROM upload_status WHERE id = %s", (upload_id,))
            found = row.fetchone()
        return found[0].encode() if found else None

    def write(self, record: Record) -> bytes:
        body = stamp(record)
        with self.pool.connection() as conn:
            conn.execute(_UPSERT, _columns(record, body))
        return body

    def change(self, upload_id: str, mutate: Mutation) -> tuple[Record, bytes]:
        with self.pool.connection() as conn, conn.transaction():
            found = conn.execute(
                "SELECT body FROM upload_status WHERE id = %s FOR UPDATE", (upload_id,)
            ).fetchone()
            if found is None:
                raise KeyError(upload_id)
            record = cast(Record, json.loads(found[0]))
            mutate(record)  # what it raises rolls the transaction back
            body = stamp(record)
            columns = _columns(record, body)
            conn.execute(
                "UPDATE upload_status SET owner = %(owner)s, state = %(state)s,"
                " updated_at = %(updated_at)s, body = %(body)s, version = version + 1"
                " WHERE id = %(id)s",
                columns,
            )
        return record, body

    def delete(self, upload_id: str) -> bool:
        with self.pool.connection() as conn:
            done = conn.execute("DELETE FROM upload_status WHERE id = %s", (upload_id,))
            return done.rowcount > 0

    def page(self, query: ListQuery) -> Page:
        where: list[str] = []
        args: list[Any] = []
        if query.owner is not None:
            where.append("owner = %s")
            args.append(query.owner)
        if query.states:
            where.append("state = ANY(%s)")
            args.append(list(query.states))
        if query.created_after is not None:
            where.append("created_at > %s")
            args.append(query.created_after)
        position = query.position()
        if position is not None:
            where.append("(created_at, id) > (%s, %s)")
            args.extend(position)
        sql = "SELECT body FROM upload_status"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id LIMIT %s"
        args.append(query.limit + 1)
        with self.pool.connection() as conn:
            rows = conn.execute(sql, args).fetchall()
        return page_of([json.loads(r[0]) for r in rows], query.limit)

    def count(self, owner: str, states: Iterable[str] = UNFINISHED) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM upload_status WHERE owner = %s AND state = ANY(%s)",
                (owner, list(states)),
            ).fetchone()
        return int(row[0]) if row else 0

    def list_expired(self, states: Iterable[str], updated_before: float, limit: int) -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id FROM upload_status WHERE state = ANY(%s)"
                " AND updated_at < to_timestamp(%s) ORDER BY updated_at, id LIMIT %s",
                (list(states), updated_before, limit),
            ).fetchall()
        return [r[0] for r in rows]


class PostgresDeliveryLog:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def record_event(self, event: dict[str, Any]) -> None:
        line = json.dumps({"kind": "event", "event": event}, separators=(",", ":"))
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO webhook_log (upload_id, kind, event_id, line)"
                " VALUES (%s, 'event', %s, %s)"
                " ON CONFLICT (upload_id, event_id) WHERE kind = 'event' DO NOTHING",
                (event["data"]["id"], event["id"], line),
            )

    def record_attempt(self, upload_id: str, attempt: dict[str, Any]) -> None:
        line = json.dumps({"kind": "attempt", **attempt}, separators=(",", ":"))
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO webhook_log (upload_id, kind, event_id, line)"
                " VALUES (%s, 'attempt', %s, %s)",
                (upload_id, attempt["event_id"], line),
            )

    def _lines(self, upload_id: str) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT line FROM webhook_log WHERE upload_id = %s ORDER BY seq", (upload_id,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def exists(self, upload_id: str) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM webhook_log WHERE upload_id = %s)", (upload_id,)
            ).fetchone()
        return bool(row and row[0])

    def find_event(self, upload_id: str, event_id: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT line FROM webhook_log"
                " WHERE upload_id = %s AND event_id = %s AND kind = 'event'",
                (upload_id, event_id),
            ).fetchone()
        return cast(dict[str, Any], json.loads(row[0])["event"]) if row else None

    def history(self, upload_id: str) -> list[dict[str, Any]]:
        return assemble_history(self._lines(upload_id))

    def delete(self, upload_id: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM webhook_log WHERE upload_id = %s", (upload_id,))


class PostgresState:
    def __init__(self, url: str, max_connections: int = 8) -> None:
        self.url = url
        # Autocommit: a plain read or write is its own statement; `change` opens
        # the one transaction that needs to be one.
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            open=True,
            name="upload-state",
            timeout=10,  # waiting for a connection: PostgreSQL down is an error, not a hang
        )
        self.status = PostgresStatusRecords(self.pool)
        self.webhooks = PostgresDeliveryLog(self.pool)

    def count_unfinished(self, owner: str) -> int:
        return self.status.count(owner, UNFINISHED)

    def check_schema(self) -> None:
        with self.pool.connection() as conn:
            migrations.check_current(conn, safe_location(self.url))

    def migrate(self) -> list[str]:
        with self.pool.connection() as conn:
            return migrations.migrate(conn)

    def close(self) -> None:
        self.pool.close()
