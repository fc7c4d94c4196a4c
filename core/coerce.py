"""Small value coercions shared by every edge (CLI, batch, Spark, HTTP): one as-of parser, one
number helper. Pure functions; errors come from :mod:`journey_stage.core.errors`."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import pandas as pd

from journey_stage.core.errors import JourneyError
from journey_stage.core.events import TIME_MAX, TIME_MIN, TIME_RANGE_TEXT, iso_us

AS_OF_HINT = "use ISO 8601, e.g. 2025-06-30T23:59:59+00:00 (a time without offset is UTC)."
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class AsOfError(JourneyError):
    """An as-of time that is not an ISO 8601 time (``code`` bad_timestamp) or lies outside the
    supported range (``code`` timestamp_out_of_range); ``expected`` says what is accepted."""

    def __init__(self, message: str, code: str, expected: str):
        super().__init__(message, AS_OF_HINT)
        self.code = code
        self.expected = expected


EXPECTED_ISO = "expected an ISO 8601 timestamp such as 2025-03-01T14:30:00+01:00"
EXPECTED_RANGE = f"expected a time from {TIME_RANGE_TEXT[0]} to {TIME_RANGE_TEXT[1]} (UTC)"


def parse_as_of(as_of: Any, source: str = "--as-of") -> pd.Timestamp | None:
    """An as-of time (ISO 8601 text, naive = UTC; or a timestamp) as a UTC Timestamp in
    microseconds; None when ``as_of`` is None or blank (the caller picks the default: the latest
    event in batch, now over HTTP). Anything else raises one :class:`JourneyError` naming
    ``source``."""
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        return None
    if isinstance(as_of, str):
        text = as_of.strip()
        us = iso_us(text)  # plain ISO 8601: the instant pandas would parse, without its overhead
        if us is not None:
            return _in_range(pd.Timestamp(us, unit="us", tz="UTC"), as_of, source)
        if not _FULL_DATE.match(text):
            raise AsOfError(f"{source} {as_of!r}: not a timestamp ({EXPECTED_ISO}).", "bad_timestamp", EXPECTED_ISO)
        as_of = text
    elif not isinstance(as_of, (datetime, pd.Timestamp)):
        raise AsOfError(f"{source} {as_of!r}: {EXPECTED_ISO}, got a {type(as_of).__name__}.", "bad_timestamp", EXPECTED_ISO)
    try:
        ts = pd.to_datetime(as_of, format="ISO8601") if isinstance(as_of, str) else pd.Timestamp(as_of)
    except (ValueError, TypeError, OverflowError) as exc:
        raise AsOfError(f"{source} {as_of!r}: not a timestamp ({str(exc).splitlines()[0][:120]}).", "bad_timestamp", EXPECTED_ISO) from None
    if ts is pd.NaT:
        raise AsOfError(f"{source} {as_of!r}: not a timestamp.", "bad_timestamp", EXPECTED_ISO)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return _in_range(ts.as_unit("us"), as_of, source)


def _in_range(ts: pd.Timestamp, as_of: Any, source: str) -> pd.Timestamp:
    if not TIME_MIN <= ts < TIME_MAX:
        low, high = TIME_RANGE_TEXT
        raise AsOfError(f"{source} {as_of!r}: outside the supported time range {low} to {high} (UTC).", "timestamp_out_of_range", EXPECTED_RANGE)
    return ts


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else None (NaN, infinities, None, text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
