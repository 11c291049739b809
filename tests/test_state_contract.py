"""One contract, both states: files on one machine and PostgreSQL behave alike.

Status records (a change is one step no other change interleaves with, which
the concurrent writers below would break otherwise), listing by cursor,
counters, retention queries, and the webhook delivery log.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from state_helpers import STATE_KINDS, open_state, record

from upload_service.core.ids import UnsafeId
from upload_service.core.state import BadCursor, ListQuery, State, UploadEnded
from upload_service.core.state.base import parse_iso
from upload_service.core.status import CACHE_PREFIX, Overtaken, StatusStore

pytestmark = pytest.mark.one_path


@pytest.fixture(params=STATE_KINDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    made = open_state(request.param, tmp_path / "data", url)
    yield made
    made.close()


def test_write_then_read(state: State) -> None:
    original = record("up1", meta={"course_id": 12})
    original["updated_at"] = "2020-01-01T00:00:00.000000Z"
    body = state.status.write(original)
    stored = state.status.read("up1")
    assert stored == body
    got = json.loads(stored or b"")
    assert got["meta"] == {"course_id": 12} and got["owner"] == "user-1"
    assert got["updated_at"] > "2020"  # every write stamps the time it was made
    assert state.status.read("nope") is None
    assert state.status.read("../etc/passwd") is None


def test_write_replaces(state: State) -> None:
    state.status.write(record("up1"))
    state.status.write(record("up1", state="uploaded", offset=10))
    got = json.loads(state.status.read("up1") or b"")
    assert (got["state"], got["offset"]) == ("uploaded", 10)


def test_change_applies_a_mutation(state: State) -> None:
    state.status.write(record("up1"))
    changed, body = state.status.change("up1", lambda r: r.update(offset=5))
    assert changed["offset"] == 5
    assert state.status.read("up1") == body
    with pytest.raises(KeyError):
        state.status.change("missing", lambda r: None)


def test_a_refused_change_leaves_the_record(state: State) -> None:
    state.status.write(record("up1", state="terminated"))
    before = state.status.read("up1")

    def refuse(r: dict[str, object]) -> None:
        r["state"] = "processing"
        raise UploadEnded("up1", "terminated")

    with pytest.raises(UploadEnded):
        state.status.change("up1", refuse)
    assert state.status.read("up1") == before


def test_a_late_offset_moves_only_an_uploading_record_forward(state: State) -> None:
    status = StatusStore(state.status, None)
    status.write_file(record("up1", offset=4))
    _, body = status.update_uploading_file("up1", offset=6, progress=None)
    assert json.loads(body)["offset"] == 6 and state.status.read("up1") == body
    with pytest.raises(Overtaken):  # a newer offset was recorded meanwhile
        status.update_uploading_file("up1", offset=5, progress=None)
    status.update_file("up1", state="uploaded", offset=10)
    finished = state.status.read("up1")
    with pytest.raises(Overtaken):  # completed meanwhile
        status.update_uploading_file("up1", offset=8, progress=None)
    assert state.status.read("up1") == finished


@pytest.mark.parametrize("hostile", ["../../outside", "../status/up1", "up1/..", "/etc/passwd"])
def test_a_late_offset_for_a_path_attack_touches_nothing(
    state: State, tmp_path: Path, hostile: str
) -> None:
    """The id of a late progress write names a record, never a path: not a record-shaped
    file outside the status directory (`data/status/../../outside.json`), nor one in it."""
    status = StatusStore(state.status, None)
    status.write_file(record("up1", offset=4))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(record("outside")))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises((UnsafeId, KeyError)):
        status.update_uploading_file(hostile, offset=6, progress=None)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_change_waits_for_the_one_in_progress(state: State) -> None:
    """B starts while A holds the record: B must see A's write, and A must keep B's."""
    state.status.write(record("up1"))
    inside = threading.Event()

    def slow(r: dict[str, object]) -> None:
        r["progress"] = {"stage": "transcode", "percent": 50.0}
        inside.set()
        time.sleep(0.5)  # a window a read-modify-write without the lock would fall into

    writer = threading.Thread(target=state.status.change, args=("up1", slow))
    writer.start()
    assert inside.wait(10)
    terminated, _ = state.status.change("up1", lambda r: r.update(state="terminated"))
    writer.join(10)
    # The DELETE came second and saw the progress; the progress was not written over it.
    assert terminated["progress"] == {"stage": "transcode", "percent": 50.0}
    got = json.loads(state.status.read("up1") or b"")
    assert got["state"] == "terminated" and got["progress"]["percent"] == 50.0


def test_concurrent_changes_lose_nothing(state: State) -> None:
    state.status.write(record("up1", count=0))

    def bump(_: int) -> None:
        for _ in range(25):
            state.status.change("up1", lambda r: r.update(count=r["count"] + 1))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(bump, range(6)))
    assert json.loads(state.status.read("up1") or b"")["count"] == 150


def test_progress_writes_never_outlive_a_delete(state: State) -> None:
    """Workers advance progress as fast as they can while a DELETE lands: after it,
    every advance is refused and the record stays terminated."""
    state.status.write(record("up1", state="processing"))
    status = StatusStore(state.status, None)
    stop = threading.Event()
    refused = []

    def worker() -> None:
        percent = 0.0
        while not stop.is_set():
            percent += 1
            try:
                status.advance("up1", state="processing", progress={"percent": percent})
            except UploadEnded:
                refused.append(percent)
                return

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    status.update("up1", state="terminated", progress=None, outputs={})
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(10)
    got = json.loads(state.status.read("up1") or b"")
    assert (got["state"], got["progress"]) == ("terminated", None)
    assert len(refused) == 3  # every worker was told, none wrote over the DELETE


def test_two_handles_share_one_state(
    state: State, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What another process (or machine) opens sees the same records."""
    kind = "postgres" if type(state).__name__.startswith("Postgres") else "files"
    url = request.getfixturevalue("postgres_url") if kind == "postgres" else ""
    state.status.write(record("up1"))
    other = open_state(kind, tmp_path / "data", url)
    try:
        other.status.change("up1", lambda r: r.update(state="uploaded"))
    finally:
        other.close()
    assert json.loads(state.status.read("up1") or b"")["state"] == "uploaded"


# -- listing -------------------------------------------------------------------------


def _created(n: int) -> str:
    return f"2026-01-01T00:00:{n:02d}.000000Z"


def _fill(state: State) -> None:
    for n in range(7):
        owner = "alice" if n % 2 == 0 else "bob"
        upload_state = "ready" if n < 3 else "uploading"
        state.status.write(record(f"u{n}", owner=owner, state=upload_state, created_at=_created(n)))


def _ids(state: State, query: ListQuery) -> list[str]:
    return [r["id"] for r in state.status.page(query).records]


def test_listing_oldest_first_with_filters(state: State) -> None:
    _fill(state)
    assert _ids(state, ListQuery()) == [f"u{n}" for n in range(7)]
    assert _ids(state, ListQuery(owner="alice")) == ["u0", "u2", "u4", "u6"]
    assert _ids(state, ListQuery(states=("ready",))) == ["u0", "u1", "u2"]
    assert _ids(state, ListQuery(owner="bob", states=("uploading", "failed"))) == ["u3", "u5"]
    after = parse_iso(_created(4))
    assert _ids(state, ListQuery(created_after=after)) == ["u5", "u6"]
    assert _ids(state, ListQuery(owner="nobody")) == []


def test_listing_pages_by_cursor(state: State) -> None:
    _fill(state)
    seen, cursor, pages = [], None, 0
    while True:
        page = state.status.page(ListQuery(limit=3, cursor=cursor))
        seen += [r["id"] for r in page.records]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        # A record created after the first page was handed out still comes, once.
        if pages == 1:
            state.status.write(record("late", created_at=_created(30)))
    assert seen == [f"u{n}" for n in range(7)] + ["late"]
    assert pages == 3
    assert state.status.page(ListQuery(limit=8)).next_cursor is None


def test_listing_same_created_at_is_ordered_by_id(state: State) -> None:
    for upload_id in ("b", "a", "c"):
        state.status.write(record(upload_id, created_at=_created(1)))
    first = state.status.page(ListQuery(limit=2))
    assert [r["id"] for r in first.records] == ["a", "b"]
    rest = state.status.page(ListQuery(limit=2, cursor=first.next_cursor))
    assert [r["id"] for r in rest.records] == ["c"] and rest.next_cursor is None


def test_a_foreign_cursor_is_refused(state: State) -> None:
    with pytest.raises(BadCursor):
        state.status.page(ListQuery(cursor="not-a-cursor"))


# -- counters and retention ----------------------------------------------------------


def test_count_unfinished_per_owner(state: State) -> None:
    _fill(state)
    assert state.count_unfinished("alice") == 2  # u4, u6
    assert state.count_unfinished("bob") == 2  # u3, u5
    assert state.count_unfinished("nobody") == 0
    assert state.status.count("alice", ("ready",)) == 2
    state.status.change("u4", lambda r: r.update(state="uploaded"))
    assert state.count_unfinished("alice") == 1


def test_list_expired_then_delete(state: State) -> None:
    for upload_id, upload_state in (("old1", "terminated"), ("old2", "expired"), ("live", "ready")):
        state.status.write(record(upload_id, state=upload_state))
    later = time.time() + 60
    assert state.status.list_expired(("terminated", "expired"), later, 10) == ["old1", "old2"]
    assert state.status.list_expired(("terminated", "expired"), later, 1) == ["old1"]
    assert state.status.list_expired(("terminated",), time.time() - 60, 10) == []
    assert state.status.delete("old1") is True
    assert state.status.delete("old1") is False
    assert state.status.read("old1") is None
    assert state.status.list_expired(("terminated", "expired"), later, 10) == ["old2"]


# -- the webhook delivery log --------------------------------------------------------


def _event(event_id: str, upload_id: str = "up1") -> dict[str, object]:
    return {"id": event_id, "type": "upload.created", "timestamp": "t", "data": {"id": upload_id}}


def test_delivery_log(state: State) -> None:
    log = state.webhooks
    assert not log.exists("up1") and log.history("up1") == []
    log.record_event(_event("msg_1"))
    log.record_event(_event("msg_1"))  # kept once
    log.record_attempt(
        "up1", {"event_id": "msg_1", "type": "upload.created", "attempt": 1, "outcome": "retrying"}
    )
    log.record_event(_event("msg_2"))
    log.record_attempt(
        "up1", {"event_id": "msg_1", "type": "upload.created", "attempt": 2, "outcome": "delivered"}
    )
    log.record_attempt(
        "up1", {"event_id": "msg_9", "type": "media.ready", "attempt": 1, "outcome": "gave_up"}
    )
    assert log.exists("up1") and not log.exists("up2")
    assert log.find_event("up1", "msg_2") == _event("msg_2")
    assert log.find_event("up1", "msg_3") is None
    history = log.history("up1")
    assert [e["id"] for e in history] == ["msg_1", "msg_2", "msg_9"]
    first = history[0]
    assert [a["attempt"] for a in first["attempts"]] == [1, 2]
    assert first["delivered"] and first["last_outcome"] == "delivered"
    assert history[1]["attempts"] == [] and history[1]["last_outcome"] is None
    assert history[2]["type"] == "media.ready" and not history[2]["delivered"]
    log.delete("up1")
    assert not log.exists("up1")


# -- Redis in front of it ------------------------------------------------------------


def test_losing_redis_loses_no_status(state: State, redis_client: redis.Redis) -> None:
    status = StatusStore(state.status, redis_client)
    status.put(record("up1"))
    status.update("up1", state="uploaded", offset=10)
    redis_client.flushall()
    got = status.get("up1")
    assert got is not None and (got["state"], got["offset"]) == ("uploaded", 10)
    cached = redis_client.get(CACHE_PREFIX + "up1")  # and the cache is filled again
    assert cached is not None and json.loads(cached)["state"] == "uploaded"
