"""One clock object per service: domain code never reads the wall clock itself.

Tests and the demo can pin or move it (``M1_CLOCK`` = ISO timestamp pins the start).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self, fixed: datetime | None = None) -> None:
        self._fixed = fixed
        self._offset = timedelta(0)

    @classmethod
    def from_env(cls) -> Clock:
        raw = os.environ.get("M1_CLOCK")
        return cls(datetime.fromisoformat(raw)) if raw else cls()

    def now(self) -> datetime:
        base = self._fixed if self._fixed is not None else datetime.now(UTC)
        return base + self._offset

    def set(self, moment: datetime) -> None:
        self._fixed = moment
        self._offset = timedelta(0)

    def advance(self, delta: timedelta) -> None:
        self._offset += delta
