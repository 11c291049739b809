"""tus-js-client (from npm, in Node) against the real server: plain, resumed, parallel.

Each upload is checked byte for byte: the sha256 of the file against the sha256
of GET /files/{id}. The Node side is tests/js/tus_upload.mjs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "js" / "tus_upload.mjs"
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def tus_js_client() -> Path:
    """tus-js-client in the root node_modules, installed from npm by package.json."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are required (installed by ./run setup)"
    package = ROOT / "node_modules" / "tus-js-client" / "package.json"
    manifest = (
        json.loads((ROOT / "package.json").read_text()) if (ROOT / "package.json").exists() else {}
    )
    if "tus-js-client" not in manifest.get("dependencies", {}):
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--save", "tus-js-client@^4.3.1"],
            cwd=ROOT,
            check=True,
            timeout=600,
        )
    elif not package.exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=ROOT, check=True, timeout=600
        )
    assert package.exists()
    return ROOT


def make_file(path: Path, size: int) -> str:
    """Random bytes in `path`, written in blocks; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MIB))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    return digest.hexdigest()


def run_node(server: LiveServer, token: str, **options: Any) -> list[dict[str, Any]]:
    options.setdefault("endpoint", f"{server.url}/files/")
    result = subprocess.run(
        ["node", str(SCRIPT), json.dumps(options)],
        cwd=ROOT,
        env={**os.environ, "TUS_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, (result.stdout[-2000:], result.stderr[-2000:])
    return lines


def remote_sha256(server: LiveServer, token: str, url: str) -> str:
    digest = hashlib.sha256()
    with (
        httpx.Client(timeout=120) as client,
        client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        assert response.status_code == 200
        for block in response.iter_bytes(MIB):
            digest.update(block)
    return digest.hexdigest()


def stored_offset(server: LiveServer, token: str, url: str) -> int:
    r = httpx.head(url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


def test_plain_upload(
    tus_js_client: Path,
    live_server: LiveServer,
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    token = make_token()
    source = tmp_path / "lecture.bin"
    expected = make_file(source, 5 * MIB + 123)
    [result] = run_node(live_server, token, file=str(source))
    assert result["event"] == "success"
    assert [r["method"] for r in result["requests"]] == ["POST", "PATCH"]
    assert remote_sha256(live_server, token, result["url"]) == expected


def test_upload_aborted_halfway_and_resumed_in_a_new_process(
    tus_js_client: Path,
    live_server: LiveServer,
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    token = make_token()
    source = tmp_path / "lecture.bin"
    size = 8 * MIB
    expected = make_file(source, size)
    storage = tmp_path / "tus-urls.json"
    common = {"file": str(source), "chunkSize": MIB, "urlStorage": str(storage)}

    [aborted] = run_node(live_server, token, abortAt=0.5, **common)
    assert aborted["event"] == "aborted"
    url = aborted["url"]
    offset = stored_offset(live_server, token, url)
    assert size * 0.25 < offset < size  # about half: the aborted chunk may be partly kept

    found, resumed = run_node(live_server, token, resume=True, **common)
    # The new process found the stored URL and continued there: no new upload.
    assert found["url"] == url
    assert resumed["event"] == "success"
    assert resumed["url"] == url
    methods = [r["method"] for r in resumed["requests"]]
    assert "POST" not in methods
    assert methods[0] == "HEAD"
    first_patch = next(r for r in resumed["requests"] if r["method"] == "PATCH")
    assert int(first_patch["offset"]) >= offset > 0
    assert remote_sha256(live_server, token, url) == expected


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(6 * MIB + 7, id="6MB"),
        pytest.param(100 * MIB, id="100MB", marks=pytest.mark.slow),
    ],
)
def test_parallel_upload(
    tus_js_client: Path,
    live_server: LiveServer,
    make_token: Callable[..., str],
    tmp_path: Path,
    size: int,
) -> None:
    token = make_token()
    source = tmp_path / "lecture.bin"
    expected = make_file(source, size)
    # parallelUploads slices its input: a Buffer, and no uploadSize (NOTES.md).
    [result] = run_node(live_server, token, file=str(source), parallel=4, buffer=True)
    assert result["event"] == "success"
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert [r["concat"] for r in posts[:4]] == ["partial"] * 4
    assert posts[4]["concat"].startswith("final;")
    assert len(posts) == 5
    assert remote_sha256(live_server, token, result["url"]) == expected
    # The final upload is an ordinary finished upload of the whole size.
    head = httpx.head(
        result["url"], headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    )
    assert head.headers["upload-length"] == str(size)
    assert head.headers["upload-concat"].startswith("final;")
