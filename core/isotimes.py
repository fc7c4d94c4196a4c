"""Many ISO 8601 timestamps of one spelling parsed at once (the HTTP service's 200-event requests).

:func:`journey_stage.core.events.iso_us` parses one text (a regular expression, then
``datetime.fromisoformat``); a request's timestamps nearly always share one spelling, e.g.
``2025-03-01T10:00:00+00:00`` or ``...T10:00:00.123Z``. :func:`same_spelling_us` checks that all
texts have the first one's shape (digits where it has digits, its exact other characters: the same
separators, fraction length and zone), with numpy on their bytes, and parses them with Arrow.

It answers only when that is provably what ``iso_us`` gives one by one, otherwise None (the caller
then parses one by one, which also decides what is invalid):
- the first text matches ``iso_us``'s pattern with seconds; a text of the same shape then matches
  the pattern too (its digits are free there) and has the same zone (the first one's, literally);
- Arrow parses every text (it rejects impossible dates and times, e.g. 02-30, 24:00, :60, as
  ``fromisoformat`` does; any text it refuses sends everything to the one-by-one path);
- every result lies in [lo, hi) (the caller's range, inside ``datetime``'s years 1..9999).
``tests/core/test_events_records.py`` compares it with ``iso_us`` one by one on generated texts.
"""

from __future__ import annotations

import re

import numpy as np

_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?")
_DIGIT = ord("0")
_shapes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = {}


def _shape_of(first: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """(digit positions, other positions, their bytes, has a zone) of ``first``'s spelling, or None."""
    m = _SHAPE.fullmatch(first)
    if m is None:
        return None
    zone_at = m.start(1) if m.group(1) else len(first)
    key = re.sub(r"\d", "0", first[:zone_at]) + first[zone_at:]  # the spelling: digits free, the zone as written
    shape = _shapes.get(key)
    if shape is None:
        raw = np.frombuffer(first.encode("ascii"), np.uint8)
        digit = np.array([c.isdigit() and i < zone_at for i, c in enumerate(first)])
        shape = (np.flatnonzero(digit), np.flatnonzero(~digit), raw[~digit].copy(), m.group(1) is not None)
        if len(_shapes) < 64:
            _shapes[key] = shape
    return shape


def same_spelling_us(texts: tuple, lo: int, hi: int) -> list[int] | None:
    """Microseconds since the epoch (naive = UTC) of ``texts`` (all ``str``) when they all share
    the first one's spelling and every instant lies in [lo, hi); None: parse them one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = texts[0]
    n, width = len(texts), len(first)
    shape = _shape_of(first) if first.isascii() else None
    if shape is None:
        return None
    joined = "".join(texts)
    if not joined.isascii() or any(len(t) != width for t in texts):
        return None
    digits, others, other_bytes, zoned = shape
    b = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(n, width)
    if not ((b[:, digits] - _DIGIT) < 10).all() or not (b[:, others] == other_bytes).all():
        return None
    try:
        parsed = pc.cast(pa.array(texts, pa.string()), pa.timestamp("us", tz="UTC" if zoned else None))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    us = parsed.cast(pa.int64()).to_numpy()
    if parsed.null_count or not (us.min() >= lo and us.max() < hi):
        return None
    return us.tolist()
