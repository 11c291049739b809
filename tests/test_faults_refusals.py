"""A refusal reaches the client: a large body the server will not read (423: another
request holds the upload; 413: past the upload's end) gets its status answer, not a
reset connection, on the fast path (spliced bodies) and the stock path alike."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
from conftest import TOKEN_SECRET, LiveServer, mint_token
from fault_proxy import FaultProxy
from live_helpers import MIB, OCTETS, SlowPatch, create, head_offset, tus, wait_until

from upload_service.core.settings import Settings

pytestmark = pytest.mark.e2e

BODY = 48 * MIB  # far more than the socket buffers hold, and than the server drains
# Less than the server drains after a refusal, far more than socket buffers hold:
# a client that reads the answer only once its body is sent (requests, which tuspy
# uses) still gets it.
DRAINED_BODY = 8 * MIB


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings, extra_env={"UPLOAD_SERVER_WORKERS": "1"}).start()
    yield live
    if live.process is not None and live.process.poll() is None:
        os.killpg(live.process.pid, signal.SIGTERM)
        live.process.wait(15)


def chunks(size: int) -> Iterator[bytes]:
    block = os.urandom(MIB)
    for _ in range(size // MIB):
        yield block


def big_patch(url: str, token: str, offset: int, size: int) -> httpx.Response:
    headers = tus(token, **{"Upload-Offset": str(offset), "Content-Type": OCTETS})
    headers["Content-Length"] = str(size)
    return httpx.patch(url, content=chunks(size), headers=headers, timeout=60)


def test_the_loser_of_two_racing_large_patches_sees_423(server: LiveServer, tmp_path: Path) -> None:
    token = mint_token(TOKEN_SECRET, "user-1")
    upload_id = create(server, token, 2 * BODY)
    url = f"{server.url}/files/{upload_id}"
    winner = SlowPatch(url, token, 0, os.urandom(2 * MIB), pause_at=MIB).start()
    wait_until(lambda: head_offset(server, token, upload_id) > 0, "the winner writes")
    for _ in range(3):
        loser = big_patch(url, token, 0, BODY)
        assert loser.status_code == 423, loser.status_code
        assert loser.headers["connection"] == "close"
        assert loser.headers["retry-after"] == "1"
        assert loser.json()["error"]["code"] == "locked"
        sent_whole = requests_patch(url, token, 0, DRAINED_BODY)
        assert sent_whole.status_code == 423, sent_whole.status_code
        assert sent_whole.headers["connection"] == "close"
    # Across a network the answer is still in flight when the server closes: closed
    # with the body unread, the reset overtakes it (the proxy drops what it had not
    # passed on, as the server's kernel would); drained, it arrives.
    proxy = FaultProxy(("127.0.0.1", server.port)).start()
    proxy.delay = 0.2
    try:
        far_url = f"http://{proxy.address}/files/{upload_id}"
        for _ in range(3):
            far = requests_patch(far_url, token, 0, DRAINED_BODY)
            assert far.status_code == 423, far.status_code
    finally:
        proxy.stop()
    winner.finish()
    assert winner.response is not None and winner.response.status_code == 204


def requests_patch(url: str, token: str, offset: int, size: int) -> requests.Response:
    headers = tus(token, **{"Upload-Offset": str(offset), "Content-Type": OCTETS})
    return requests.patch(url, data=os.urandom(size), headers=headers, timeout=60)


def test_a_large_body_past_the_uploads_end_sees_413(server: LiveServer) -> None:
    token = mint_token(TOKEN_SECRET, "user-1")
    upload_id = create(server, token, MIB)
    url = f"{server.url}/files/{upload_id}"
    refused = big_patch(url, token, 0, BODY)
    assert refused.status_code == 413, refused.status_code
    assert refused.headers["connection"] == "close"
    sent_whole = requests_patch(url, token, 0, DRAINED_BODY)
    assert sent_whole.status_code == 413, sent_whole.status_code
    assert head_offset(server, token, upload_id) == 0
