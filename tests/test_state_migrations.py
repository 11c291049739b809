"""`upload-service migrate`, and serve/worker refusing a schema that is not current."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import settings_env
from postgres_helpers import create_database, drop_database

from upload_service.core.settings import Settings
from upload_service.core.state import SchemaNotCurrent, make_state
from upload_service.core.state.migrations import latest_version

pytestmark = pytest.mark.one_path

EXE = Path(sys.executable).with_name("upload-service")


@pytest.fixture
def fresh_database() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *command], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_start_refuses_an_unmigrated_database(
    settings: Settings, fresh_database: str, command: str
) -> None:
    env = settings_env(settings) | {"STATE_URL": fresh_database}
    done = run([command], env)
    assert done.returncode != 0
    assert "has schema version 0, this code needs" in done.stderr, done.stderr
    assert "run `upload-service migrate` first" in done.stderr


def test_migrate_applies_once_then_start_is_allowed(
    settings: Settings, fresh_database: str
) -> None:
    state = make_state(settings.with_changes(state_url=fresh_database))
    try:
        with pytest.raises(SchemaNotCurrent):
            state.check_schema()
        env = settings_env(settings) | {"STATE_URL": fresh_database}
        first = run(["migrate"], env)
        assert first.returncode == 0, first.stderr
        assert "applied 1 migration(s): 0001_state.sql" in first.stdout
        again = run(["migrate"], env)
        assert again.returncode == 0 and "nothing to apply" in again.stdout
        state.check_schema()  # current now
    finally:
        state.close()
    with psycopg.connect(fresh_database) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(latest_version(),)]
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    assert [t[0] for t in tables] == ["schema_migrations", "upload_status", "webhook_log"]


def test_a_newer_schema_is_refused_too(settings: Settings, fresh_database: str) -> None:
    state = make_state(settings.with_changes(state_url=fresh_database))
    try:
        state.migrate()
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'x.sql')")
        with pytest.raises(SchemaNotCurrent, match="newer than this code's"):
            state.check_schema()
    finally:
        state.close()


def test_unreachable_or_foreign_state_url_is_refused(settings: Settings) -> None:
    env = settings_env(settings)
    nowhere = run(["serve"], env | {"STATE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    assert nowhere.returncode != 0
    assert "the state database at postgresql://127.0.0.1:1/x does not answer" in nowhere.stderr
    foreign = run(["serve"], env | {"STATE_URL": "mysql://db/x"})
    assert foreign.returncode != 0
    assert "STATE_URL must be a postgresql://" in foreign.stderr


def test_file_state_needs_no_migration(settings: Settings) -> None:
    done = run(["migrate"], settings_env(settings))
    assert done.returncode == 0 and "nothing to migrate" in done.stdout
