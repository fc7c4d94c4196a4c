"""The small-input fast path (:func:`journey_stage.core.events.canonical_records`, used by the HTTP service)
gives exactly the canonical frame of the general path, or declines (None)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journey_stage.core.errors import InputError
from journey_stage.core.events import canonical_events, canonical_records, iso_us
from journey_stage.core.taxonomy import load_taxonomy

TAX = load_taxonomy("five_stage")
COLS = ["customer_id", "timestamp", "event_type", "channel", "value", "campaign"]

built_timestamps = st.builds(
        lambda y, mo, d, h, mi, s, us, tz: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{us:06d}" if us else "") + tz,
        st.integers(1970, 2100), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59),
        st.integers(0, 59), st.integers(0, 999_999), st.sampled_from(["", "Z", "+01:00", "-05:30", "+14:00", "+00:00"]),
)
timestamps = st.one_of(
    built_timestamps,
    st.sampled_from([
        "2025-03-01", "2025-03-01 10:00", "2025-03-01T10:00:05.5Z", "2025-02-30T00:00:00Z", "2025-03-01T10:00:00+0100",
        " 2025-03-01T10:00:00Z", "2025-13-01T00:00:00Z", "not a time", "", "2025-03-01T24:00:00Z", "2025-W09-6",
        "2025-03-01T10:00:00.1234567Z", "2025-03-01T10:00:00+25:00", "20250301T100000Z",
    ]),
)
texts = st.sampled_from(["a", "b", "c1", "Kunde-ä", " a", "a ", "", "\tx", "İstanbul", "x\u00a0"])
channels = st.one_of(st.none(), st.sampled_from(["instagram", "Email", "SEARCH", "tiktok ", "", "other-thing", "İnsta", "ÉMAIL"]))
values = st.one_of(st.none(), st.sampled_from([0.0, 1.5, 49.9, 1e12, -0.0]), st.floats(0, 1e6, allow_nan=False))
event_types = st.sampled_from(list(TAX.event_role)[:6] + ["unknown_kind", " purchase", ""])
records = st.lists(st.tuples(st.sampled_from(["c1", "c2", "c10"]), timestamps, event_types, channels, values, st.one_of(st.none(), texts)), max_size=25)


def general(recs: list[tuple]) -> pd.DataFrame | None:
    raw = pd.DataFrame({c: [r[i] for r in recs] for i, c in enumerate(COLS)}).astype({c: object for c in COLS if c != "value"})
    raw["value"] = raw["value"].astype("float64")
    try:
        return canonical_events(raw, "request", TAX).events
    except InputError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.randoms(use_true_random=False))
def test_fast_path_equals_general_path_or_declines(recs, rnd):
    recs = recs + recs[: rnd.randint(0, len(recs))]  # exact duplicates
    rnd.shuffle(recs)
    fast = canonical_records(recs, TAX)
    if not recs:
        return
    slow = general(recs)
    if fast is None:
        return  # declined: the service then takes the general path
    assert slow is not None, "the fast path accepted input the general path rejects"
    pd.testing.assert_frame_equal(fast, slow)


def test_fast_path_takes_the_plain_cases():
    et = list(TAX.event_role)
    recs = [
        ("c1", "2025-03-01T10:00:00Z", et[0], "Instagram", None, "spring"),
        ("c1", "2025-03-01T09:00:00+01:00", et[1], None, 12.5, None),  # same instant as above in UTC
        ("c1", "2025-03-01", et[2], "email", 0.0, None),
        ("c1", "2025-03-01T10:00:00Z", et[0], "Instagram", None, "spring"),  # exact duplicate
    ]
    fast = canonical_records(recs, TAX)
    assert fast is not None and len(fast) == 3
    pd.testing.assert_frame_equal(fast, general(recs))
    assert fast["channel"].tolist()[1:] == ["instagram", None] or fast["channel"].isna().sum() == 1


@pytest.mark.parametrize(
    "bad",
    [
        ("c1", "yesterday", "product_view", None, None, None),
        ("c1", "2025-03-01T10:00:00Z", "no_such_event", None, None, None),
        (" c1", "2025-03-01T10:00:00Z", "product_view", None, None, None),
        ("c1", "2025-03-01T10:00:00Z", "product_view", "Ínstagram", None, None),
        ("c1", "2025-03-01T10:00:00+0100", "product_view", None, None, None),
    ],
)
def test_fast_path_declines_what_it_does_not_prove(bad):
    assert canonical_records([bad], TAX) is None


clean_records = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "Kunde-ä"]),
        built_timestamps,
        st.sampled_from(list(TAX.event_role)),
        st.one_of(st.none(), st.sampled_from(["instagram", "Email", "SEARCH", "other-thing"])),
        st.one_of(st.none(), st.floats(0.5, 1e6, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(["spring", "Kampagne-ü"])),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(clean_records)
def test_fast_path_accepts_clean_input_and_agrees(recs):
    recs = [r for r in recs if r[1][8:10] <= "28"] or [("c1", "2025-01-01T00:00:00Z", list(TAX.event_role)[0], None, None, None)]
    fast = canonical_records(recs, TAX)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, general(recs))


@settings(max_examples=300, deadline=None)
@given(timestamps)
def test_iso_us_is_pandas_iso8601_parse_or_none(text):
    us = iso_us(text)
    if us is None:
        return
    ts = pd.to_datetime(pd.Series([text.strip()]), utc=True, errors="coerce", format="ISO8601").iloc[0]
    assert not pd.isna(ts) and ts.value // 1000 == us


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(timestamps, st.just("2025-03-01T10:00:00Z\n2025-03-02"), st.just("2025-03-01\n")), min_size=1, max_size=8))
def test_many_timestamps_at_once_equal_one_at_a_time(texts):
    """canonical_rows checks the timestamp pattern once on all texts joined: the same answers as
    :func:`iso_us` one by one (None as soon as one text is not plain)."""
    from journey_stage.core.events import _iso_us_many

    one = [iso_us(t) for t in texts]
    assert _iso_us_many(tuple(texts)) == (None if None in one else one)


# one spelling for all texts (digits free, so impossible dates and times too), as the service gets them
def _spelled(sep: str, frac: int, zone: str):
    return st.builds(
        lambda y, mo, d, h, mi, s, f: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}" + (f".{f:0{frac}d}" if frac else "") + zone,
        st.one_of(st.integers(1970, 2100), st.integers(0, 9999)), st.integers(0, 19), st.integers(0, 39), st.integers(0, 29),
        st.integers(0, 69), st.integers(0, 69), st.integers(0, 10**frac - 1 if frac else 0),
    )


same_spelling = st.tuples(st.sampled_from(["T", " "]), st.integers(0, 6),
                          st.sampled_from(["", "Z", "+01:00", "-05:30", "+14:00", "+00:00", "+23:59", "-23:59", "+0100", "+01"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(same_spelling.flatmap(lambda sp: st.lists(st.one_of(_spelled(*sp), timestamps) if sp[1] == 3 else _spelled(*sp), min_size=1, max_size=12)))
def test_same_spelling_at_once_equals_iso_us_one_at_a_time(texts):
    """core.isotimes (numpy shape check + Arrow) answers only what iso_us gives one by one, in range."""
    from journey_stage.core.events import _TIME_MAX_US, _TIME_MIN_US, _iso_us_many
    from journey_stage.core.isotimes import same_spelling_us

    one = [iso_us(t) for t in texts]
    fast = same_spelling_us(tuple(texts), _TIME_MIN_US, _TIME_MAX_US)
    if fast is not None:
        assert fast == one and all(_TIME_MIN_US <= u < _TIME_MAX_US for u in fast)
    assert _iso_us_many(tuple(texts)) == (None if None in one else one)


def test_same_spelling_takes_the_service_spellings():
    from journey_stage.core.isotimes import same_spelling_us

    for texts in (["2025-09-30T21:37:03+00:00", "2025-10-01T01:02:03+00:00"], ["2025-03-01T10:00:00.123Z", "2024-02-29T23:59:59.999Z"],
                  ["2025-03-01 10:00:00", "2025-03-02 11:00:00"], ["2025-03-01T10:00:00.5-02:30"]):
        assert same_spelling_us(tuple(texts), -2**62, 2**62) == [iso_us(t) for t in texts]
    for texts in (["2025-03-01T10:00:00Z", "2025-03-01T10:00:00+00:00"], ["2025-02-29T10:00:00Z"], ["2025-03-01T10:00:00+0100"],
                  ["2025-03-01"], ["2025-03-01T10:00Z"], ["2025-03-01T10:00:00Z", "2025-03-01T10:00:00z"]):
        assert same_spelling_us(tuple(texts), -2**62, 2**62) is None


@settings(max_examples=200, deadline=None)
@given(records)
def test_canonical_rows_are_the_rows_of_the_canonical_frame(recs):
    from journey_stage.core.events import canonical_rows, tuples_frame

    rows = canonical_rows(recs, TAX)
    frame = canonical_records(recs, TAX)
    assert (rows is None) == (frame is None)
    if rows is not None:
        pd.testing.assert_frame_equal(tuples_frame(rows), frame)
        assert len(set(rows)) == len(rows) and all(isinstance(r[1], int) for r in rows)  # no duplicates, microseconds
