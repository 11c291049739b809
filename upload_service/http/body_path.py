"""The one place UPLOAD_FAST_PATH chooses the path request bodies take into the server.

on (the default): uvicorn runs the fast protocol (upload_service.fastpath.protocol,
a subclass of its httptools protocol), and a body bound for a store's file goes
socket to file in the kernel (SplicingBody) when it is large and unchecksummed.

off: uvicorn's own httptools protocol with nothing changed but how a connection
with an unread body is closed (http.lingering_close; h11 where httptools is not
installed) and the stock body, which reads `request.stream()` and nothing else
(RequestBody).

`serve` takes the protocol from here, the app the body: they always agree.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from upload_service.core.settings import Settings
from upload_service.http.tus.body import MakeBody, RequestBody

FAST_PROTOCOL = "upload_service.fastpath.protocol:UploadHttpToolsProtocol"
STOCK_PROTOCOL = "upload_service.http.lingering_close:LingeringHttpToolsProtocol"


@dataclass(frozen=True)
class BodyPath:
    http_protocol: str  # uvicorn's `http=` setting
    make_body: MakeBody


def body_path(settings: Settings) -> BodyPath:
    # The fast protocol subclasses uvicorn's httptools one: without httptools, stock.
    if importlib.util.find_spec("httptools") is None:
        return BodyPath("auto", RequestBody)
    if settings.fast_path:
        from upload_service.fastpath.body import SplicingBody

        return BodyPath(FAST_PROTOCOL, SplicingBody)
    return BodyPath(STOCK_PROTOCOL, RequestBody)
