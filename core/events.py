"""Events (SPEC section 2): validate a raw table and turn it into the canonical frame.

Pure functions over DataFrames; files are read in :mod:`journey_stage.core.io`. The canonical frame has the
columns of :data:`COLUMNS`, typed, timestamps in UTC, exact duplicates removed, sorted by
(customer_id, timestamp, event_type). Invalid rows are never dropped silently: they are returned
as rejects with one reason per row, and :func:`canonical_events` raises when rejects are not
wanted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from journey_stage.core import errors
from journey_stage.core.errors import InputError, Problem
from journey_stage.core.isotimes import same_spelling_us
from journey_stage.core.taxonomy import Taxonomy

REQUIRED = ("customer_id", "timestamp", "event_type")
OPTIONAL = ("channel", "value", "campaign")
COLUMNS = REQUIRED + OPTIONAL
TS_DTYPE = "datetime64[us, UTC]"
MAX_PROBLEMS = 10_000  # problems kept as objects (every invalid row still gets a reason in the rejects)
# Supported event and as-of times: [TIME_MIN, TIME_MAX) in UTC. Outside it an event is a row problem
# (pandas' nanosecond arithmetic and the features' microsecond offsets stay far from overflow).
TIME_MIN = pd.Timestamp("1900-01-01", tz="UTC")
TIME_MAX = pd.Timestamp("2200-01-01", tz="UTC")
TIME_RANGE_TEXT = ("1900-01-01", "2199-12-31")
_TIME_MIN_US, _TIME_MAX_US = TIME_MIN.value // 1000, TIME_MAX.value // 1000
MAX_TEXT_CHARS = 256  # customer_id, event_type, channel, campaign
TEXT_COLUMNS = ("customer_id", "event_type", "channel", "campaign")
# C0 controls, DEL, and the bidirectional marks and overrides (Trojan-source style spoofing)
_BAD_CHARS = re.compile("[\x00-\x1f\x7f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Validated:
    events: pd.DataFrame  # canonical, valid rows only
    rejects: pd.DataFrame  # raw values of invalid rows + source, row, reject_reason
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    duplicates_removed: int = 0
    unknown_event_types: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def _blank(s: pd.Series) -> np.ndarray:
    """True where a value is null or an empty/whitespace string."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        return (s.isna() | (s.astype("str").str.strip() == "")).to_numpy(dtype=bool)
    return s.isna().to_numpy(dtype=bool)


def _as_str(s: pd.Series) -> pd.Series:
    """Text, stripped, empty -> missing. Whole numbers that pandas read as floats (an integer
    column with nulls) keep their integer text: 42, not 42.0."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_float_dtype(s.dtype):
        whole = s.dropna()
        if len(whole) and bool((whole == np.floor(whole)).all()) and bool((whole.abs() < 2**53).all()):
            s = s.astype("Int64")
    out = s.astype("str").str.strip()
    return out.mask(out == "")


def _parse_timestamps(s: pd.Series) -> pd.Series:
    """UTC timestamps; NaT where the text is not an ISO 8601 time with at least a full date
    (``2025`` or ``2025-06`` are not read as the first day of the year or month)."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype(TS_DTYPE)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize("UTC").astype(TS_DTYPE)
    txt = s.astype("str").str.strip()
    parsed = pd.to_datetime(txt, utc=True, errors="coerce", format="ISO8601").astype(TS_DTYPE)
    full = txt.str.match(_FULL_DATE).fillna(False).to_numpy(dtype=bool)
    return parsed.where(full)


def _out_of_range(ts: pd.Series) -> np.ndarray:
    us = ts.array.asi8 if len(ts) else np.zeros(0, np.int64)
    return ts.notna().to_numpy() & ((us < _TIME_MIN_US) | (us >= _TIME_MAX_US))


def _check_text(raw: pd.DataFrame, source: str, rows: np.ndarray, found: "_RowProblems") -> None:
    """Text columns: at most MAX_TEXT_CHARS characters, no control or bidi-override characters."""
    for col in TEXT_COLUMNS:
        if col not in raw.columns or not (raw[col].dtype == object or pd.api.types.is_string_dtype(raw[col].dtype)):
            continue
        s = raw[col].astype("str").where(raw[col].notna())
        n = s.str.len().fillna(0).to_numpy()
        found.flag(n > MAX_TEXT_CHARS, lambda i, c=col: errors.problem_text_too_long(source, int(rows[i]), c, MAX_TEXT_CHARS, int(n[i])))
        bad = s.str.contains(_BAD_CHARS).fillna(False).to_numpy(dtype=bool)
        found.flag(bad, lambda i, c=col, s=s: errors.problem_bad_character(source, int(rows[i]), c, s.iloc[i]))


class _RowProblems:
    """Problems found so far, per row: every problem of a row goes into its reject reason; the
    first :data:`MAX_PROBLEMS` are kept as :class:`Problem` objects, all are counted."""

    def __init__(self, n: int):
        self.reason = np.full(n, "", dtype=object)
        self.problems: list[Problem] = []
        self.count = 0

    def flag(self, mask: np.ndarray, make) -> None:
        idx = np.flatnonzero(mask)
        self.count += len(idx)
        for i in idx:
            p = make(i)
            self.reason[i] = f"{self.reason[i]}; {p.message}" if self.reason[i] else p.message
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(p)


def validate_events(
    raw: pd.DataFrame,
    source: str = "<DataFrame>",
    taxonomy: Taxonomy | None = None,
    *,
    first_row: int = 1,
) -> Validated:
    """Check every row of ``raw`` against the schema (and the taxonomy when given)."""
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise errors.missing_columns(source, missing, [str(c) for c in raw.columns])
    rows = np.arange(first_row, first_row + len(raw))
    found = _RowProblems(len(raw))

    cid_blank = _blank(raw["customer_id"])
    found.flag(cid_blank, lambda i: errors.problem_missing(source, int(rows[i]), "customer_id"))

    ts_raw = raw["timestamp"]
    ts_blank = _blank(ts_raw)
    found.flag(ts_blank, lambda i: errors.problem_missing(source, int(rows[i]), "timestamp"))
    ts = _parse_timestamps(ts_raw)
    ts_bad = ts.isna().to_numpy() & ~ts_blank
    found.flag(ts_bad, lambda i: errors.problem_bad_timestamp(source, int(rows[i]), "timestamp", ts_raw.iloc[i]))
    found.flag(_out_of_range(ts), lambda i: errors.problem_time_out_of_range(source, int(rows[i]), "timestamp", ts_raw.iloc[i], *TIME_RANGE_TEXT))

    et_blank = _blank(raw["event_type"])
    found.flag(et_blank, lambda i: errors.problem_missing(source, int(rows[i]), "event_type"))
    event_type = _as_str(raw["event_type"])

    unknown: list[str] = []
    if taxonomy is not None:
        known = event_type.isin(list(taxonomy.event_role)).to_numpy() | et_blank
        if not known.all():
            unknown = sorted(pd.unique(event_type[~known]).tolist())
            found.flag(~known, lambda i: errors.problem_unknown_event_type(source, int(rows[i]), "event_type", event_type.iloc[i], taxonomy.name))
    _check_text(raw, source, rows, found)

    events = pd.DataFrame(
        {
            "customer_id": _as_str(raw["customer_id"]),
            "timestamp": ts,
            "event_type": event_type,
            "channel": _optional_str(raw, "channel", lower=True),
            "value": _checked_values(raw, source, rows, found),
            "campaign": _optional_str(raw, "campaign"),
        }
    )
    return _split_valid(raw, events, source, rows, found, unknown)


def _checked_values(raw: pd.DataFrame, source: str, rows: np.ndarray, found: _RowProblems) -> pd.Series:
    """The optional ``value`` column as float64 (NaN where blank or absent); non-numbers,
    infinities and negative values are flagged."""
    if "value" not in raw.columns:
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    v_raw = raw["value"]
    v_blank = _blank(v_raw)
    value = pd.to_numeric(v_raw.where(~v_blank), errors="coerce").astype("float64")
    v_bad = (value.isna().to_numpy() & ~v_blank) | np.isinf(value.to_numpy())
    found.flag(v_bad, lambda i: errors.problem_bad_number(source, int(rows[i]), "value", v_raw.iloc[i]))
    v_neg = (value < 0).fillna(False).to_numpy(dtype=bool)
    found.flag(v_neg, lambda i: errors.problem_negative_value(source, int(rows[i]), "value", v_raw.iloc[i]))
    return value


def _optional_str(raw: pd.DataFrame, col: str, lower: bool = False) -> pd.Series:
    if col not in raw.columns:
        return pd.Series(pd.NA, index=raw.index, dtype="str")
    s = _as_str(raw[col])
    return s.str.lower() if lower else s


def _split_valid(raw: pd.DataFrame, events: pd.DataFrame, source: str, rows: np.ndarray, found: _RowProblems, unknown: list[str]) -> Validated:
    """Valid rows (deduplicated, canonical order) and rejected rows with their reasons."""
    bad = found.reason != ""
    rejects = raw.loc[bad].astype("str").copy() if bad.any() else raw.iloc[:0].astype("str").copy()
    rejects.insert(0, "reject_reason", found.reason[bad].astype(str))
    rejects.insert(0, "row", rows[bad])
    rejects.insert(0, "source", source)
    events = events.loc[~bad]
    before = len(events)
    events = sort_events(events.drop_duplicates(ignore_index=True))
    return Validated(
        events=events,
        rejects=rejects.reset_index(drop=True),
        problems=found.problems,
        n_problems=found.count,
        duplicates_removed=before - len(events),
        unknown_event_types=unknown,
        ignored_columns=[str(c) for c in raw.columns if c not in COLUMNS],
    )


def sort_events(events: pd.DataFrame) -> pd.DataFrame:
    """A total order (all columns), so the same events always come out in the same order."""
    cols = [c for c in COLUMNS if c in events.columns]
    return events.sort_values(cols, kind="stable", ignore_index=True, na_position="first")


def canonical_events(
    raw: pd.DataFrame,
    source: str = "<DataFrame>",
    taxonomy: Taxonomy | None = None,
    *,
    allow_rejects: bool = False,
) -> Validated:
    """Validate and raise :class:`InputError` listing every problem unless ``allow_rejects``."""
    result = validate_events(raw, source, taxonomy)
    if result.n_problems and not allow_rejects:
        hint = (
            errors.unknown_event_types_hint(result.unknown_event_types, taxonomy.name)
            if result.unknown_event_types and taxonomy is not None
            else errors.bad_events_hint()
        )
        raise InputError(source, result.problems, hint, total=result.n_problems)
    if len(result.events) == 0 and not result.n_problems:
        raise errors.no_events(source)
    return result


def concat_validated(parts: list[Validated]) -> Validated:
    """Combine the results of several files of one folder."""
    if len(parts) == 1:
        return parts[0]
    events = pd.concat([p.events for p in parts], ignore_index=True)
    before = len(events)
    events = sort_events(events.drop_duplicates(ignore_index=True))
    return Validated(
        events=events,
        rejects=pd.concat([p.rejects for p in parts], ignore_index=True),
        problems=[q for p in parts for q in p.problems][:MAX_PROBLEMS],
        n_problems=sum(p.n_problems for p in parts),
        duplicates_removed=sum(p.duplicates_removed for p in parts) + before - len(events),
        unknown_event_types=sorted({u for p in parts for u in p.unknown_event_types}),
        ignored_columns=sorted({c for p in parts for c in p.ignored_columns}),
    )


# ---- small clean inputs (the HTTP service): the same canonical frame without pandas' fixed costs --

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?"
)
_ISO_MANY = re.compile(f"(?:{_ISO.pattern})(?:\n(?:{_ISO.pattern}))*")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


def iso_us(text: str) -> int | None:
    """Microseconds since the epoch of a plain ISO 8601 timestamp (naive = UTC), or None when the
    text is anything else (the caller then takes the general path, which parses or reports it)."""
    return None if _ISO.fullmatch(text) is None else _plain_us(text)


def _plain_us(text: str) -> int | None:
    """Microseconds since the epoch of a text that matches the plain ISO 8601 pattern (naive = UTC)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (t - _EPOCH) // _ONE_US


def _iso_us_many(texts: tuple) -> list[int] | None:
    """:func:`iso_us` of every text, or None when one is not a plain ISO 8601 timestamp. Texts of
    one spelling, all in range, are parsed at once (:func:`~journey_stage.core.isotimes.same_spelling_us`);
    otherwise the pattern is checked once on all texts joined by newlines (none may contain one)."""
    if set(map(type, texts)) - {str}:
        return None
    if texts and (same := same_spelling_us(texts, _TIME_MIN_US, _TIME_MAX_US)) is not None:
        return same  # one spelling, in range: parsed at once (core.isotimes)
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or _ISO_MANY.fullmatch(joined) is None:
        return None
    out = [_plain_us(text) for text in texts]
    return None if None in out else out


def _clean_text(s: object) -> bool:
    return (isinstance(s, str) and s != "" and not s[0].isspace() and not s[-1].isspace()
            and len(s) <= MAX_TEXT_CHARS and _BAD_CHARS.search(s) is None)


def canonical_records(records: list[tuple], taxonomy: Taxonomy) -> pd.DataFrame | None:
    """The canonical frame of small, clean input rows — or None, and the caller uses
    :func:`canonical_events` (which also explains every problem): :func:`canonical_rows` as a
    frame (:func:`tuples_frame`)."""
    rows = canonical_rows(records, taxonomy)
    return None if rows is None else tuples_frame(rows)


def canonical_rows(records: list[tuple], taxonomy: Taxonomy) -> list[tuple] | None:
    """The rows of the canonical frame of small, clean input rows, as plain ``(customer_id,
    microseconds, event_type, channel, value, campaign)`` tuples in canonical order (duplicates
    removed) — or None, and the caller uses :func:`canonical_events`. Without a DataFrame: the
    HTTP service encodes these directly (:func:`journey_stage.features.encode.encode_rows`).

    ``records`` are ``(customer_id, timestamp, event_type, channel, value, campaign)`` tuples as a
    typed API delivers them (text, text, text, text or None, finite float >= 0 or None, text or
    None). The result equals ``canonical_events(DataFrame(records), ..., taxonomy).events`` (a
    test compares the two on generated inputs); any value outside the plain cases that equality
    is proven for (surrounding whitespace, non-ASCII channels, other timestamp spellings, unknown
    event types, ...) returns None instead of a second opinion."""
    known = taxonomy.event_role
    if not records:
        return []
    cid_col, ts_col, et_col, ch_col, v_col, camp_col = zip(*records)
    us_col = _iso_us_many(ts_col)
    if us_col is None or not (_TIME_MIN_US <= min(us_col) and max(us_col) < _TIME_MAX_US):
        return None
    if not all(v is None or (isinstance(v, float) and 0.0 <= v < float("inf") and math.copysign(1.0, v) > 0) for v in v_col):
        return None
    cids, types, chans, camps = set(cid_col), set(et_col), set(ch_col), set(camp_col)
    rows = list(zip(cid_col, us_col, et_col, ch_col, v_col, camp_col))
    # each distinct text is checked once
    if not all(_clean_text(c) for c in cids) or not all(isinstance(e, str) and e in known and _clean_text(e) for e in types):
        return None
    if not all(c is None or _clean_text(c) for c in camps):
        return None
    lower = {}
    for ch in chans:
        if ch is not None:
            if not (_clean_text(ch) and ch.isascii()):
                return None
            if ch.lower() != ch:
                lower[ch] = ch.lower()
    if lower:
        rows = [(c, u, e, lower.get(ch, ch), v, cp) for c, u, e, ch, v, cp in rows]
    if len(cids) == 1 and all(map(int.__lt__, us_col, us_col[1:])):
        return rows  # one customer, strictly increasing times: already in canonical order, no duplicate
    return sorted(set(rows), key=_sort_key)


def merge_rows(*parts: list[tuple]) -> list[tuple]:
    """Canonical row tuples of several sources (sent and stored events) as one canonical list:
    exact duplicates once, in :func:`sort_events`' order."""
    return sorted(set().union(*parts), key=_sort_key)


def tuples_frame(rows: list[tuple]) -> pd.DataFrame:
    """Plain ``(customer_id, microseconds, event_type, channel, value, campaign)`` tuples (None
    where missing) as a frame with the canonical columns and types, in the given order."""
    n = len(rows)
    cols = list(zip(*rows)) if n else [()] * 6
    return pd.DataFrame(
        {
            "customer_id": pd.array(list(cols[0]), dtype="str"),
            "timestamp": pd.array(np.array(cols[1], dtype="datetime64[us]"), dtype=TS_DTYPE) if n else pd.array([], dtype=TS_DTYPE),
            "event_type": pd.array(list(cols[2]), dtype="str"),
            "channel": pd.array(list(cols[3]), dtype="str"),
            "value": np.array([np.nan if x is None else x for x in cols[4]], dtype=np.float64),
            "campaign": pd.array(list(cols[5]), dtype="str"),
        }
    )


def _sort_key(r: tuple) -> tuple:
    """:func:`sort_events`' order (every column, missing first) for one record."""
    cid, us, et, ch, v, camp = r
    return (cid, us, et, ch is not None, ch or "", v is not None, v or 0.0, camp is not None, camp or "")
