"""The NYSE trading calendar, from the maintained `exchange-calendars` library (holidays,
early closes and their history kept up to date upstream, rather than a hand-kept list).
Windows, settlement dates and margin-call deadlines all count sessions on it."""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


@lru_cache(maxsize=8)
def nyse(year: int) -> Any:
    """The XNYS calendar covering ``year`` and the years either side (cached: building it
    takes a while, and so does importing the library, which happens on first use only)."""
    import exchange_calendars

    with warnings.catch_warnings():  # pandas deprecation notices from inside the library
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar("XNYS", start=f"{year - 1}-01-01", end=f"{year + 1}-12-31")
