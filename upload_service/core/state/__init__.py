"""Durable state shared by every process: status records, the webhook log, counters.

`make_state(settings)` picks the implementation STATE_URL names: none for
local files (one machine), `postgresql://...` for PostgreSQL (several). The
interface and what it promises are in `base`.
"""

from upload_service.core.state.base import (
    ENDED,
    UNFINISHED,
    BadCursor,
    DeliveryLog,
    ListQuery,
    Page,
    Record,
    SchemaNotCurrent,
    State,
    StatusRecords,
    UploadEnded,
)
from upload_service.core.state.factory import check_state_settings, make_state, shared_state

__all__ = [
    "ENDED",
    "UNFINISHED",
    "BadCursor",
    "DeliveryLog",
    "ListQuery",
    "Page",
    "Record",
    "SchemaNotCurrent",
    "State",
    "StatusRecords",
    "UploadEnded",
    "check_state_settings",
    "make_state",
    "shared_state",
]
