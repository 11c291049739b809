"""The fast protocol subclasses uvicorn's internals: the installed uvicorn is one it
was checked against, and has every class, method and attribute it relies on."""

from __future__ import annotations

import asyncio
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_helpers import connected, request_head

from upload_service.fastpath.protocol import UVICORN_INTERNALS
from upload_service.http.head_limits import UVICORN_INTERNALS as HEAD_LIMITS_INTERNALS

pytestmark = pytest.mark.anyio
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PROTOCOL = "upload_service/fastpath/protocol.py"


def uvicorn_requirement() -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [found] = [Requirement(d) for d in dependencies if Requirement(d).name == "uvicorn"]
    return found


def test_uvicorn_is_pinned_to_a_minor_range_and_the_installed_one_is_in_it() -> None:
    requirement = uvicorn_requirement()
    upper = [s for s in requirement.specifier if s.operator == "<"]
    assert upper, f"pyproject.toml must pin uvicorn below a next minor: {PROTOCOL} subclasses it"
    installed = version("uvicorn")
    assert requirement.specifier.contains(installed), (
        f"uvicorn {installed} is installed, but {PROTOCOL} was checked against "
        f"uvicorn{requirement.specifier} only (pyproject.toml)"
    )


async def test_uvicorn_still_has_every_internal_the_fast_protocol_relies_on() -> None:
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        done.set()

    # uvicorn's own protocol, mid-request: what the subclass finds when it takes over.
    protocol, _ = connected(app, HttpToolsProtocol)
    protocol.data_received(request_head("PATCH", "/x", 10, "Expect: 100-continue"))
    await asyncio.wait_for(done.wait(), 5)
    seen["HttpToolsProtocol"] = protocol
    seen["RequestResponseCycle"] = getattr(protocol, "cycle", None)
    seen["FlowControl"] = getattr(protocol, "flow", None)
    missing = [
        f"{owner}.{name}"
        for owner, names in UVICORN_INTERNALS.items()
        for name in names
        if not hasattr(seen[owner], name)
    ]
    assert not missing, (
        f"uvicorn {version('uvicorn')} no longer has what {PROTOCOL} relies on: "
        f"{', '.join(missing)}. Adapt the subclass to this uvicorn and move the pin in "
        "pyproject.toml, or install a uvicorn within the pin; UPLOAD_FAST_PATH=off "
        "serves with uvicorn's own protocol meanwhile."
    )


async def test_uvicorn_still_has_every_internal_the_head_limits_rely_on() -> None:
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        done.set()

    protocol, _ = connected(app, HttpToolsProtocol)
    protocol.data_received(request_head("GET", "/x", 0))
    await asyncio.wait_for(done.wait(), 5)
    missing = [name for name in HEAD_LIMITS_INTERNALS if not hasattr(protocol, name)]
    assert not missing, (
        f"uvicorn {version('uvicorn')} no longer has what upload_service/http/head_limits.py "
        f"relies on: {', '.join(missing)}"
    )
