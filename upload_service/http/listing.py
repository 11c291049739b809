"""`GET /v1/uploads?owner=&state=&created_after=&cursor=&limit=`: the backend's listing.

Served from the state (not the Redis cache, which holds only what was read or
written lately), oldest first, a page at a time. The cursor is opaque: the
position after the page's last upload, so uploads created meanwhile never
shift a page and none is skipped or repeated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from upload_service.core.errors import BadRequest
from upload_service.core.state.base import LIST_LIMIT_MAX, BadCursor, ListQuery, Page, parse_iso
from upload_service.core.status import STATES

LISTING_PARAMS = ("owner", "state", "created_after", "cursor", "limit")
DEFAULT_LIMIT = 100


def list_query(params: Mapping[str, str]) -> ListQuery:
    """The query's parameters checked, each refusal saying what is wrong."""
    owner = params.get("owner") or None
    states = tuple(s for s in (params.get("state") or "").split(",") if s)
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise BadRequest(f"state must be among {', '.join(STATES)}; got {', '.join(unknown)}")
    created_after = None
    if params.get("created_after"):
        try:
            created_after = parse_iso(params["created_after"])
        except ValueError:
            raise BadRequest(
                "created_after must be an ISO 8601 time, such as 2026-11-28T17:00:00Z"
            ) from None
    raw_limit = params.get("limit") or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_LIMIT_MAX:
        raise BadRequest(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}")
    query = ListQuery(
        owner=owner,
        states=states,
        created_after=created_after,
        cursor=params.get("cursor") or None,
        limit=int(raw_limit),
    )
    try:
        query.position()
    except BadCursor as exc:
        raise BadRequest(f"{exc}: pass next_cursor from the previous page as it was") from None
    return query


def page_body(page: Page, encoded: list[bytes]) -> bytes:
    """`{"uploads": [...], "next_cursor": ...}` around bodies already encoded (and signed)."""
    cursor = json.dumps(page.next_cursor).encode()
    return b'{"uploads":[' + b",".join(encoded) + b'],"next_cursor":' + cursor + b"}"
