"""A figure: one measure of this service, its reference measured in the same run, and
the ratio between them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Figure:
    section: str
    name: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)
    reference_samples: list[float] = field(default_factory=list)
    # UPLOAD_FAST_PATH of the server measured ("on" or "off"); "" for a figure of a
    # reference alone (the bare responder, the client's ceiling).
    fast_path: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0):
            return None
        return self.value / self.reference

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
