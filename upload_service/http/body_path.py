"""The one place UPLOAD_FAST_PATH chooses the path request bodies take into the server.

on (the default): uvicorn runs the fast protocol (upload_service.fastpath.protocol,
a subclass of its httptools protocol), and a body bound for a store's file goes
socket to file in the kernel (SplicingBody) when it is large and unchecksummed.

off: uvicorn's own httptools protocol with bounded request heads
(http/head_limits.py) and a lingering close of a connection with an unread body
(http/lingering_close.py); h11 where httptools is not installed, bounded by
uvicorn's own size limit; and the stock body, which reads `request.stream()` and
nothing else (RequestBody).

`serve` takes the protocol from here, the app the body: they always agree.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from upload_service.core.settings import Settings
from upload_service.http.tus.body import MakeBody, RequestBody

FAST_PROTOCOL = "upload_service.fastpath.protocol:UploadHttpToolsProtocol"
STOCK_PROTOCOL = "upload_service.http.head_limits:BoundedHttpToolsProtocol"


@dataclass(frozen=True)
class BodyPath:
    http_protocol: str  # uvicorn's `http=` setting
    make_body: MakeBody


def body_path(settings: Settings) -> BodyPath:
    # Both protocols subclass uvicorn's httptools one: without httptools, h11.
    if importlib.util.find_spec("httptools") is None:
        return BodyPath("h11", RequestBody)
    if settings.fast_path:
        from upload_service.fastpath.body import SplicingBody

        return BodyPath(FAST_PROTOCOL, SplicingBody)
    return BodyPath(STOCK_PROTOCOL, RequestBody)
