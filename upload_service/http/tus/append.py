"""The one append routine: tus PATCH, creation-with-upload and the IETF draft's append.

As tusd's handlers all call one writeChunk, both protocols hand an append here
once they have parsed their headers; what an append goes through is decided
in this one place:

- admission: creations and the start and end of appends run a few at a time
  (`admitted`), bodies stream outside of it;
- the upload's lock, held from the checks against the upload to the last hook;
- the body into the store, with what ends it early: a checksum mismatch (the
  chunk is discarded), a stall or a trickle (408 with the offset kept), a full
  disk (507 with the offset kept), a client gone (the bytes kept), a cancelled
  request (the bytes kept and recorded, shielded);
- drain: on shutdown, cancelled appends get a moment to record their offset
  and release their lock;
- the hooks: progress, and `finished` when this append completes the upload.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request

from upload_service.core.body_rate import RateFloor
from upload_service.core.diskspace import is_no_space
from upload_service.core.errors import (
    BadRequest,
    ChecksumMismatchError,
    InsufficientStorage,
    RequestTimeout,
    ServiceError,
    TooLarge,
)
from upload_service.core.locks import Locker
from upload_service.core.quotas import Quotas
from upload_service.core.store.base import ChecksumMismatch, Digest, UploadInfo, UploadStore
from upload_service.core.store.body import BodyTooLarge
from upload_service.http.tus.body import MakeBody, Stalled, count_stored_bytes
from upload_service.http.tus.headers import CHECKSUM_ALGORITHMS
from upload_service.http.tus.hooks import UploadHooks


def admission(limit: int | None) -> AbstractAsyncContextManager[Any]:
    """At most `limit` holders at once (None: any number).

    One that waits for no one goes on without yielding to the event loop
    (anyio's default yields once per acquire): under load every extra turn
    queues a request behind all the others.
    """
    return anyio.Semaphore(limit, fast_acquire=True) if limit else nullcontext()


def check_room(
    request: Request, room: int, too_large: Callable[[str], ServiceError] = TooLarge
) -> None:
    """Refuse a body whose declared length goes past the upload's end."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > room:
        raise too_large(
            f"the body of {declared} bytes goes past the upload's end ({room} bytes left)"
        )


class Appender:
    def __init__(
        self,
        store: UploadStore,
        locker: Locker,
        hooks: UploadHooks,
        *,
        make_body: MakeBody,
        body_timeout: float,
        admitted: int | None,
        quotas: Quotas | None = None,
        rate_floor: RateFloor | None = None,
    ) -> None:
        self.rate_floor = rate_floor  # a body slower than this is cut off like a stall
        self.quotas = quotas  # per-user limits on creating uploads (None: none)
        self.store = store
        self.locker = locker
        self.hooks = hooks
        self.make_body = make_body
        self.body_timeout = body_timeout
        self._admitted = admission(admitted)
        self._writes = 0  # appends streaming a body into the store right now
        self._idle: anyio.Event | None = None  # set when _writes drops to 0 during drain()

    async def create(self, info: UploadInfo) -> None:
        """A new upload: stored, then announced. A creation that fails half-way (a
        full disk) leaves nothing behind: the client never learnt its URL."""
        if self.quotas is not None:
            await self.quotas.admit(info.owner)  # 429 before anything is stored
        async with self._admitted:
            try:
                await self.store.create(info)
                await self.hooks.created(info)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._discard(info)
                raise
        if info.finished:  # a zero-length upload is complete at creation
            await self.hooks.finished(info)

    async def _discard(self, info: UploadInfo) -> None:
        with contextlib.suppress(OSError, LookupError):  # never stored, or already gone
            await self.store.terminate(info.id)
        await self.hooks.discarded(info)

    async def append(
        self,
        request: Request,
        upload_id: str,
        prepare: Callable[[], Awaitable[UploadInfo]] | None,
        limit: int,
        checksum: tuple[str, bytes] | None = None,
        *,
        declare: Callable[[UploadInfo], Awaitable[None]] | None = None,
        completes: bool = False,
        too_large: Callable[[str], ServiceError] = TooLarge,
    ) -> UploadInfo:
        """Store the request's body at the upload's offset; the upload's info after it.

        Under the upload's lock, `prepare` loads the upload and checks the
        request against it, raising to refuse (None: the upload was just made by
        this request), then `declare` may set its length (tus' Upload-Length).
        `limit` bounds an upload whose length is not known yet. `completes`: the
        client says this body ends the upload (the draft's `Upload-Complete`),
        so its end fixes a deferred length, and an upload left short is refused.
        """
        async with self._writing(), AsyncExitStack() as held:
            async with self._admitted:
                hold = await held.enter_async_context(self.locker.lock(upload_id))
                info = await (prepare() if prepare else self.store.get(upload_id))
                was_finished = info.finished
                if declare is not None:
                    await declare(info)
                room = (info.length if info.length is not None else limit) - info.offset
                check_room(request, room, too_large)
                if was_finished:
                    return info  # an empty append to a complete upload: nothing happens
            digest = (CHECKSUM_ALGORITHMS[checksum[0]](), checksum[1]) if checksum else None
            whole = await self._store_body(request, info, room, digest, too_large)
            if not whole:
                completes = False  # the client went away: its body ended nothing
            # Still ours? A lock taken over meanwhile (this process looked dead, or
            # was cut off from Redis past the TTL) has a new writer: it records.
            await hold.confirm()
            async with self._admitted:
                if completes and info.length is None:
                    info.length = info.offset  # the body's end is the upload's end
                    await self.store.save(info)
                await self.hooks.progressed(info, broke_off=not whole)
                if info.finished:
                    await self.hooks.finished(info)
        if completes and not info.finished:
            raise BadRequest(
                f"inconsistent length: the upload ended at {info.offset} "
                f"but its length is {info.length}"
            )
        return info

    async def _store_body(
        self,
        request: Request,
        info: UploadInfo,
        room: int,
        digest: tuple[Digest, bytes] | None,
        too_large: Callable[[str], ServiceError],
    ) -> bool:
        """Updates `info.offset`; False when the client went away before the end."""
        start = info.offset
        with count_stored_bytes(info):
            try:
                body = self.make_body(request, self.body_timeout, self.rate_floor)
                # A declared length was checked against the room already (check_room);
                # a chunked body is found too long only as it streams.
                chunked = "content-length" not in request.headers
                if chunked:
                    body.bound(room)
                info.offset = await self.store.write(info, body, room, digest)
                if chunked and info.offset - start == room and await body.goes_on():
                    raise BodyTooLarge()
            except BodyTooLarge:
                raise await self._too_long(info, room, too_large) from None
            except ChecksumMismatch:
                raise ChecksumMismatchError() from None
            except Stalled:
                raise await self._stalled(info) from None
            except OSError as exc:
                if not is_no_space(exc):
                    raise
                raise await self._out_of_space(info) from None
            except ClientDisconnect:
                # Keep what arrived: the client resumes from HEAD's offset. The
                # response goes nowhere, but the hooks record the offset.
                info.offset = (await self.store.get(info.id)).offset
                info.updated_at = time.time()
                return False
            except anyio.get_cancelled_exc_class():
                # A shutdown past its grace period cancels the request: the store
                # kept what arrived; record that offset before going down.
                with anyio.CancelScope(shield=True):
                    info.offset = (await self.store.get(info.id)).offset
                    info.updated_at = time.time()
                    await self.hooks.progressed(info, broke_off=True)
                raise
        info.updated_at = time.time()
        return True

    async def _stalled(self, info: UploadInfo) -> ServiceError:
        """Like a disconnect, but the client may still be listening: keep what
        arrived, record it (the lock is released after) and tell it to resume."""
        info.offset = (await self.store.get(info.id)).offset
        info.updated_at = time.time()
        await self.hooks.progressed(info, broke_off=True)
        floor = f" or crawled below {self.rate_floor.min_rate} bytes/s" if self.rate_floor else ""
        return RequestTimeout(
            f"the body stalled (nothing for {self.body_timeout:g} s){floor}; "
            f"{info.offset} bytes are stored, resume from there",
            headers={"Upload-Offset": str(info.offset), "Connection": "close"},
        )

    async def _too_long(
        self, info: UploadInfo, room: int, too_large: Callable[[str], ServiceError]
    ) -> ServiceError:
        """A chunked body longer than the room left: refused like a declared one, and
        never taken as the upload's end. What arrived within the room is kept, as for
        any body that broke off; a creation's caller abandons its new upload."""
        info.offset = (await self.store.get(info.id)).offset
        info.updated_at = time.time()
        await self.hooks.progressed(info, broke_off=True)
        error = too_large(f"the body goes past the upload's end ({room} bytes were left)")
        error.headers.update({"Upload-Offset": str(info.offset), "Connection": "close"})
        return error

    async def abandon(self, info: UploadInfo) -> None:
        """A new upload its creating request could not fill as asked (the client got
        an error, not its URL): removed, and recorded as terminated."""
        with anyio.CancelScope(shield=True):
            await self.store.terminate(info.id)
            await self.hooks.terminated(info)

    async def _out_of_space(self, info: UploadInfo) -> ServiceError:
        """The disk filled mid-body: what was written stays (the offset is the file's
        size), the client is told so, and resumes from there once there is room."""
        info.offset = (await self.store.get(info.id)).offset
        info.updated_at = time.time()
        try:
            await self.hooks.progressed(info, broke_off=True)
        except OSError as exc:  # the status record shares the full disk
            if not is_no_space(exc):
                raise
        return InsufficientStorage(
            f"the server's disk is full; {info.offset} bytes are stored, resume from there later",
            headers={"Upload-Offset": str(info.offset), "Connection": "close"},
        )

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        self._writes += 1
        try:
            yield
        finally:
            self._writes -= 1
            if self._writes == 0 and self._idle is not None:
                self._idle.set()

    async def drain(self, grace: float) -> None:
        """On shutdown: let cancelled appends record their offset and release their lock."""
        if self._writes:
            self._idle = anyio.Event()
            with anyio.move_on_after(grace):
                await self._idle.wait()
