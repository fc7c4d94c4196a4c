"""Hostile values in event files and as-of times (issue 13, defects 2 and 10): each one is a row
problem with a clear message (or one JourneyError for --as-of), never a traceback later on."""

from __future__ import annotations

import pandas as pd
import pytest

from journey_stage.core.coerce import parse_as_of
from journey_stage.core.errors import JourneyError
from journey_stage.core.events import MAX_TEXT_CHARS, TIME_MAX, TIME_MIN, canonical_records, validate_events
from journey_stage.core.taxonomy import load_taxonomy

TAX = load_taxonomy("five_stage")


def frame(**overrides) -> pd.DataFrame:
    row = {"customer_id": "c1", "timestamp": "2025-06-01T10:00:00Z", "event_type": "purchase", "channel": "web", "value": "12.5", "campaign": "spring"}
    return pd.DataFrame([row, row | overrides])


def problems(raw: pd.DataFrame) -> list[tuple[str, int, str]]:
    v = validate_events(raw, "f.csv", TAX)
    return [(p.code, p.row, p.column) for p in v.problems]


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1677-09-21T00:00:00Z", "2262-04-12T00:00:00Z", "1899-12-31T23:59:59Z"])
def test_timestamps_outside_the_supported_range_are_row_problems(ts):
    assert problems(frame(timestamp=ts)) == [("timestamp_out_of_range", 2, "timestamp")]
    v = validate_events(frame(timestamp=ts), "f.csv", TAX)
    assert "1900-01-01" in v.problems[0].message and "2199-12-31" in v.problems[0].message
    assert len(v.events) == 1 and len(v.rejects) == 1


@pytest.mark.parametrize("ts", ["-0001-01-01T00:00:00Z", "2025", "2025-06", "202506", "25-06-01"])
def test_partial_or_signed_dates_are_bad_timestamps(ts):
    assert problems(frame(timestamp=ts)) == [("bad_timestamp", 2, "timestamp")]


def test_the_range_edges_are_inside():
    assert problems(frame(timestamp=TIME_MIN.isoformat())) == []
    assert problems(frame(timestamp="2199-12-31T23:59:59.999999Z")) == []
    assert TIME_MAX == pd.Timestamp("2200-01-01", tz="UTC")


@pytest.mark.parametrize("column", ["customer_id", "event_type", "channel", "campaign"])
def test_text_longer_than_the_limit_is_a_row_problem(column):
    long = "x" * (MAX_TEXT_CHARS + 1)
    assert ("text_too_long", 2, column) in problems(frame(**{column: long}))
    assert problems(frame(**{column: "x" * MAX_TEXT_CHARS})) in ([], [("unknown_event_type", 2, "event_type")])


@pytest.mark.parametrize("bad", ["a\x00b", "a\u202eb", "a\u2066b", "a\x07b"])
@pytest.mark.parametrize("column", ["customer_id", "channel", "campaign"])
def test_control_and_bidi_characters_are_row_problems(bad, column):
    assert ("bad_character", 2, column) in problems(frame(**{column: bad}))


def test_the_http_fast_path_hands_hostile_values_to_the_general_path():
    good = ("c1", "2025-06-01T10:00:00Z", "purchase", "web", None, None)
    assert canonical_records([good], TAX) is not None
    for bad in [("c1", "9999-12-31T23:59:59Z", "purchase", None, None, None), ("c\x00", "2025-06-01T10:00:00Z", "purchase", None, None, None),
                ("x" * (MAX_TEXT_CHARS + 1), "2025-06-01T10:00:00Z", "purchase", None, None, None),
                ("c1", "2025-06-01T10:00:00Z", "purchase", None, None, "\u202espring")]:
        assert canonical_records([bad], TAX) is None


@pytest.mark.parametrize("text", ["2300-01-01", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1800-05-01"])
def test_as_of_outside_the_range_is_one_error(text):
    with pytest.raises(JourneyError) as err:
        parse_as_of(text, "--as-of")
    assert "--as-of" in str(err.value) and "1900-01-01" in str(err.value)


def test_as_of_inside_the_range_parses():
    assert parse_as_of("2025-06-30T23:59:59+02:00") == pd.Timestamp("2025-06-30T21:59:59Z")
    assert parse_as_of(" ") is None
