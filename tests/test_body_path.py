"""UPLOAD_FAST_PATH chooses, in one place, the protocol uvicorn serves with and the body
the stores read: on, large bodies go socket to file (spliced); off, uvicorn's own
protocol and `request.stream()`. Uploads conform, and refusals are heard, either way.
(Bounded request heads, both ways: test_bounds_heads.py.)"""

from __future__ import annotations

import http.client
import os
import re
import urllib.request
from collections.abc import Callable

import pytest
import requests
from conftest import LiveServer
from fault_proxy import FaultProxy
from live_helpers import MIB, OCTETS, create, head_offset, tus
from tus_helpers import checksum

pytestmark = pytest.mark.one_path


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_a_large_body_refused_unread_is_answered_either_way(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    # A client across a network that sends its whole body before it reads (requests,
    # which tuspy uses) gets the 413, not a reset that overtook it: both paths close
    # such a connection lingering.
    server = server_factory(UPLOAD_FAST_PATH=fast_path, UPLOAD_SERVER_WORKERS="1")
    token = make_token()
    upload_id = create(server, token, MIB)
    headers = tus(token, **{"Upload-Offset": "0", "Content-Type": OCTETS})
    proxy = FaultProxy(("127.0.0.1", server.port)).start()
    proxy.delay = 0.2
    try:
        url = f"http://{proxy.address}/files/{upload_id}"
        refused = requests.patch(url, data=os.urandom(8 * MIB), headers=headers, timeout=60)
        assert refused.status_code == 413, refused.text
        assert head_offset(server, token, upload_id) == 0
        # The upload then takes its bytes.
        body = os.urandom(MIB)
        done = requests.patch(url, data=body, headers=headers, timeout=60)
        assert done.status_code == 204, done.text
    finally:
        proxy.stop()
    assert (server.settings.uploads_dir / upload_id).read_bytes() == body


def spliced_bytes(server: LiveServer) -> float:
    metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    found = re.search(r"^upload_bytes_spliced_total (\S+)$", metrics, re.M)
    assert found
    return float(found.group(1))


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_uploads_land_whole_either_way_and_only_on_is_spliced(
    server_factory: Callable[..., LiveServer], make_token: Callable[..., str], fast_path: str
) -> None:
    server = server_factory(UPLOAD_FAST_PATH=fast_path)
    token = make_token()
    plain, checksummed = os.urandom(2 * MIB + 7), os.urandom(MIB)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    tus = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    conn.request("POST", "/files/", headers={**tus, "Upload-Length": str(3 * MIB + 7)})
    created = conn.getresponse()
    created.read()
    upload_id = created.headers["Location"].rsplit("/", 1)[-1]
    offset = 0
    for body, extra in (
        (plain, {}),
        (checksummed, {"Upload-Checksum": checksum("sha1", checksummed)}),
    ):
        headers = {
            **tus,
            **extra,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        }
        conn.request("PATCH", f"/files/{upload_id}", body, headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 204
        offset += len(body)
        assert response.headers["Upload-Offset"] == str(offset)
    conn.close()
    assert (server.settings.uploads_dir / upload_id).read_bytes() == plain + checksummed
    if fast_path == "on":
        # The plain body went socket to file; the checksummed one through the loop.
        assert 0 < spliced_bytes(server) <= len(plain)
    else:
        assert spliced_bytes(server) == 0
