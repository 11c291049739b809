"""The fast path's request body: into a file, the bytes go socket to file in the kernel.

When the server runs the fast protocol (protocol.py) and a store asks for the
body in a file it opened, with no digest to feed, the body's bytes are spliced
there by a lane thread (splice.py): they never reach Python. Otherwise (a
checksum, a body too small to splice, another server) it is the stock body.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect

from upload_service.core.store.base import AppendFile, Digest
from upload_service.core.threads import run_blocking
from upload_service.fastpath.splice import BODY_TO_FILE, Outcome
from upload_service.http.tus.body import RequestBody, Stalled


class SplicingBody(RequestBody):
    async def write_to(self, file: AppendFile, limit: int, digest: Digest | None = None) -> int:
        extension = self.request.scope.get("extensions", {}).get(BODY_TO_FILE)
        if digest is None and extension is not None:
            fd = await run_blocking(file.fileno)
            result = await extension["to_file"](fd, limit, self.idle_timeout, self.rate_floor)
            if result is not None:  # else the request is past splicing: read it below
                moved, outcome = result
                if outcome is Outcome.EOF:
                    raise ClientDisconnect()
                if outcome is Outcome.STALLED:
                    raise Stalled()
                return int(moved)
        return await super().write_to(file, limit, digest)
