"""Many ISO 8601 timestamps of one spelling parsed at once (the HTTP service's 200-event requests).

:func:`journey_stage.core.events.iso_us` parses one text (a regular expression, then
``datetime.fromisoformat``); a request's timestamps nearly always share one spelling, e.g.
``2025-03-01T10:00:00+00:00`` or ``...T10:00:00.123Z``. :func:`same_spelling_us` checks that all
texts have the first one's shape (digits where it has digits, its exact other characters: the same
separators, fraction length and zone) and parses them, in one loop over their bytes compiled by
numba.

It answers only when that is provably what ``iso_us`` gives one by one, otherwise None (the caller
then parses one by one, which also decides what is invalid):
- the first text matches ``iso_us``'s pattern with seconds; a text of the same shape then matches
  the pattern too (its digits are free there) and has the same zone (the first one's, literally);
- every text is a date and time ``fromisoformat`` accepts: year 1-9999, a real day of its month
  (02-29 in leap years only), hours < 24, minutes and seconds < 60 (any other text sends
  everything to the one-by-one path);
- every result lies in [lo, hi) (the caller's range, inside ``datetime``'s years 1..9999).
``tests/core/test_events_records.py`` compares it with ``iso_us`` one by one on generated texts.
"""

from __future__ import annotations

import re

import numpy as np

from journey_stage.core.compiled import compiled

_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?")
_DIGIT = ord("0")
_shapes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}


def _shape_of(first: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """(digit positions, other positions, their bytes, the zone's offset in microseconds) of
    ``first``'s spelling, or None."""
    m = _SHAPE.fullmatch(first)
    if m is None:
        return None
    zone_at = m.start(1) if m.group(1) else len(first)
    key = re.sub(r"\d", "0", first[:zone_at]) + first[zone_at:]  # the spelling: digits free, the zone as written
    shape = _shapes.get(key)
    if shape is None:
        raw = np.frombuffer(first.encode("ascii"), np.uint8)
        digit = np.array([c.isdigit() and i < zone_at for i, c in enumerate(first)])
        shape = (np.flatnonzero(digit), np.flatnonzero(~digit), raw[~digit].copy(), _zone_us(m.group(1)))
        if len(_shapes) < 64:
            _shapes[key] = shape
    return shape


def _zone_us(zone: str | None) -> int:
    """``Z``, ``+hh:mm`` or ``-hh:mm`` (None: naive, read as UTC) as microseconds east of UTC."""
    if not zone or zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    return sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000_000


def same_spelling_us(texts: tuple, lo: int, hi: int) -> list[int] | None:
    """Microseconds since the epoch (naive = UTC) of ``texts`` (all ``str``) when they all share
    the first one's spelling and every instant lies in [lo, hi); None: parse them one by one."""
    first = texts[0]
    n, width = len(texts), len(first)
    shape = _shape_of(first) if first.isascii() else None
    if shape is None:
        return None
    joined = "".join(texts)
    if not joined.isascii() or set(map(len, texts)) != {width}:
        return None
    digits, others, other_bytes, zone_us = shape
    b = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(n, width)
    us = np.empty(n, np.int64)
    if not compiled(_parse)(b, digits, others, other_bytes, zone_us, us):
        return None
    if not (us.min() >= lo and us.max() < hi):
        return None
    return us.tolist()


def _parse(b, digits, others, other_bytes, zone_us, out):  # pragma: no cover - compiled
    """Rows of ``b`` (one text each, of the spelling ``digits``/``others``) -> ``out`` in
    microseconds (UTC: minus the spelling's zone offset); False when a row does not have the
    spelling or is not a date and time ``datetime.fromisoformat`` accepts (year 1-9999, a real day
    of its month, hours < 24, minutes and seconds < 60)."""
    fraction_digits = len(digits) - 14  # after YYYY MM DD hh mm ss
    v = np.zeros(14, np.int64)
    for r in range(b.shape[0]):
        for j in range(len(digits)):
            if b[r, digits[j]] - _DIGIT > 9:  # uint8: bytes below "0" wrap around
                return False
        for j in range(len(others)):
            if b[r, others[j]] != other_bytes[j]:
                return False
        for j in range(14):
            v[j] = b[r, digits[j]] - _DIGIT
        year = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3]
        month, day = v[4] * 10 + v[5], v[6] * 10 + v[7]
        hour, minute, second = v[8] * 10 + v[9], v[10] * 10 + v[11], v[12] * 10 + v[13]
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        if year < 1 or month < 1 or month > 12 or day < 1 or hour > 23 or minute > 59 or second > 59:
            return False
        last_day = 31
        if month == 2:
            last_day = 29 if leap else 28
        elif month == 4 or month == 6 or month == 9 or month == 11:
            last_day = 30
        if day > last_day:
            return False
        micro = 0
        for j in range(6):  # the fraction, padded with zeros to microseconds
            micro = micro * 10 + (b[r, digits[14 + j]] - _DIGIT if j < fraction_digits else 0)
        y = year - 1 if month <= 2 else year  # days since 1970-01-01 (H. Hinnant's days_from_civil)
        era = y // 400
        yoe = y - era * 400
        doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
        days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
        out[r] = ((days * 24 + hour) * 60 + minute) * 60 * 1_000_000 + second * 1_000_000 + micro - zone_us
    return True
