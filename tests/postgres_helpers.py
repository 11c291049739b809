"""A database of its own on the PostgreSQL at 127.0.0.1:5432, per test session.

Created with a random name, migrated by the service's own migrations, dropped
at the end: runs never see each other's rows, and nothing is left behind.
"""

from __future__ import annotations

import os
import secrets

import psycopg

# Trust authentication, as on the development machines and in CI.
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STATE_TABLES = ("upload_status", "webhook_log")


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def create_database() -> str:
    """A fresh empty database; its URL."""
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(STATE_TABLES)}")
