"""Event input (SPEC section 2): every file format, time zones, de-duplication, validation messages, rejects."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journey_stage.core.errors import InputError, JourneyError
from journey_stage.core.events import COLUMNS, TS_DTYPE, canonical_events, sort_events, validate_events
from journey_stage.core.io import read_events
from journey_stage.core.taxonomy import load_taxonomy

FIVE = load_taxonomy("five_stage")

# Unsorted raw events with a zero-padded id, offsets (+01:00, Z, -05:00) and a naive (= UTC) time.
RAW = [
    {"customer_id": "00042", "timestamp": "2025-03-01T14:30:00+01:00", "event_type": "purchase",
     "channel": "instagram", "value": 19.99, "campaign": "spring"},
    {"customer_id": "7", "timestamp": "2025-03-02T08:00:00+00:00", "event_type": "review_written",
     "channel": "email", "value": 0.0, "campaign": "c9"},
    {"customer_id": "00042", "timestamp": "2025-03-01T09:00:00Z", "event_type": "ad_click",
     "channel": "facebook", "value": None, "campaign": "spring"},
    {"customer_id": "7", "timestamp": "2025-02-28T20:00:00-05:00", "event_type": "product_view",
     "channel": "search", "value": None, "campaign": None},
    {"customer_id": "00042", "timestamp": "2025-03-01 12:00:00", "event_type": "add_to_cart",
     "channel": "instagram", "value": None, "campaign": None},
]


def expected_frame() -> pd.DataFrame:
    """The canonical frame of RAW: typed, UTC, sorted by (customer_id, timestamp, event_type)."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["00042", "00042", "00042", "7", "7"], dtype="str"),
            "timestamp": pd.to_datetime(
                ["2025-03-01T09:00:00Z", "2025-03-01T12:00:00Z", "2025-03-01T13:30:00Z",
                 "2025-03-01T01:00:00Z", "2025-03-02T08:00:00Z"], utc=True,
            ).astype(TS_DTYPE),
            "event_type": pd.Series(["ad_click", "add_to_cart", "purchase", "product_view", "review_written"], dtype="str"),
            "channel": pd.Series(["facebook", "instagram", "instagram", "search", "email"], dtype="str"),
            "value": pd.Series([np.nan, np.nan, 19.99, np.nan, 0.0], dtype="float64"),
            "campaign": pd.Series(["spring", None, "spring", None, "c9"], dtype="str"),
        }
    )


def assert_canonical(df: pd.DataFrame) -> None:
    assert list(df.columns) == list(COLUMNS)
    assert str(df["timestamp"].dtype) == TS_DTYPE
    assert df["value"].dtype == np.float64
    for col in ("customer_id", "event_type", "channel", "campaign"):
        assert pd.api.types.is_string_dtype(df[col].dtype), col
    pd.testing.assert_frame_equal(df, expected_frame())


# ---- writers -------------------------------------------------------------------------------------

def write_csv(records: list[dict], path: Path, compression: str | None = None, sep: str = ",") -> Path:
    pd.DataFrame(records).to_csv(path, index=False, compression=compression, sep=sep)
    return path


def write_jsonl(records: list[dict], path: Path) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_parquet(records: list[dict], path: Path) -> Path:
    pd.DataFrame(records).to_parquet(path, index=False)
    return path


WRITERS = {
    "events.parquet": write_parquet,
    "events.pq": write_parquet,
    "events.csv": write_csv,
    "events.csv.gz": lambda r, p: write_csv(r, p, compression="gzip"),
    "events.tsv": lambda r, p: write_csv(r, p, sep="\t"),
    "events.jsonl": write_jsonl,
    "events.jsonl.gz": write_jsonl,
    "events.ndjson": write_jsonl,
}


# ---- formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(WRITERS))
def test_every_file_format_gives_the_same_canonical_frame(tmp_path, name):
    path = WRITERS[name](RAW, tmp_path / name)
    result = read_events(path, FIVE)
    assert_canonical(result.events)
    assert result.duplicates_removed == 0
    assert result.n_problems == 0
    assert len(result.rejects) == 0


def test_dataframe_input_gives_the_same_canonical_frame():
    result = canonical_events(pd.DataFrame(RAW), taxonomy=FIVE)
    assert_canonical(result.events)


def test_dataframe_with_typed_tz_aware_timestamps_gives_the_same_frame():
    raw = pd.DataFrame(RAW)
    raw["timestamp"] = pd.to_datetime(raw["timestamp"], utc=True, format="ISO8601").dt.tz_convert("Europe/Paris")
    assert isinstance(raw["timestamp"].dtype, pd.DatetimeTZDtype)
    assert_canonical(canonical_events(raw, taxonomy=FIVE).events)


def test_folder_of_mixed_files_gives_the_same_canonical_frame(tmp_path):
    folder = tmp_path / "events"
    (folder / "sub").mkdir(parents=True)
    write_parquet(RAW[:2], folder / "part-0.parquet")
    write_csv(RAW[2:3], folder / "part-1.csv")
    write_jsonl(RAW[3:4], folder / "sub" / "part-2.jsonl.gz")
    write_csv(RAW[4:], folder / "part-3.csv.gz", compression="gzip")
    # not event files: ignored
    (folder / "README.txt").write_text("not events")
    (folder / "_SUCCESS").write_text("")
    write_csv([{"customer_id": "x"}], folder / ".hidden.csv")
    write_csv([{"customer_id": "x"}], folder / "_metadata.csv")
    result = read_events(folder, FIVE)
    assert_canonical(result.events)
    assert result.duplicates_removed == 0


def test_duplicates_across_files_of_a_folder_are_removed_and_counted(tmp_path):
    write_csv(RAW, tmp_path / "a.csv")
    write_jsonl(RAW[:3], tmp_path / "b.jsonl")
    result = read_events(tmp_path, FIVE)
    assert_canonical(result.events)
    assert result.duplicates_removed == 3


def test_customer_ids_are_kept_as_text(tmp_path):
    ids = ["00042", "0", "1e3", "007.50", "NA", "123456789012345678901234567890"]
    records = [{"customer_id": c, "timestamp": "2025-03-01T00:00:00Z", "event_type": "ad_click"} for c in ids]
    for name in ("e.csv", "e.csv.gz", "e.jsonl", "e.parquet"):
        writer = {"e.csv": write_csv, "e.csv.gz": lambda r, p: write_csv(r, p, compression="gzip"),
                  "e.jsonl": write_jsonl, "e.parquet": write_parquet}[name]
        events = read_events(writer(records, tmp_path / name)).events
        assert sorted(events["customer_id"].tolist()) == sorted(ids), name
        assert pd.api.types.is_string_dtype(events["customer_id"].dtype)


def test_numeric_customer_ids_become_integer_text(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text('{"customer_id": 42, "timestamp": "2025-03-01", "event_type": "ad_click"}\n')
    assert read_events(path).events["customer_id"].tolist() == ["42"]


def test_numeric_customer_ids_with_a_null_keep_integer_text_jsonl(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text(
        '{"customer_id": 42, "timestamp": "2025-03-01", "event_type": "ad_click"}\n'
        '{"customer_id": null, "timestamp": "2025-03-01", "event_type": "ad_click"}\n'
    )
    result = read_events(path, allow_rejects=True)
    assert len(result.rejects) == 1
    assert result.events["customer_id"].tolist() == ["42"]


def test_numeric_customer_ids_with_a_null_keep_integer_text_parquet(tmp_path):
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"customer_id": pa.array([42, None], pa.int64()),
                             "timestamp": ["2025-03-01", "2025-03-01"], "event_type": ["ad_click", "ad_click"]}), path)
    result = read_events(path, allow_rejects=True)
    assert len(result.rejects) == 1
    assert result.events["customer_id"].tolist() == ["42"]


def test_blank_customer_id_in_dictionary_encoded_parquet_is_rejected(tmp_path):
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"customer_id": pa.array(["1", " "]).dictionary_encode(),
                             "timestamp": ["2025-03-01", "2025-03-01"],
                             "event_type": pa.array(["ad_click", "ad_click"]).dictionary_encode()}), path)
    with pytest.raises(InputError, match=re.escape(f"{path}, row 2, column 'customer_id': expected a non-empty value")):
        read_events(path, FIVE)


def test_optional_columns_may_be_absent_and_text_is_normalised():
    raw = pd.DataFrame({"customer_id": [" 00042 "], "timestamp": ["2025-03-01T00:00:00Z"], "event_type": [" ad_click "]})
    events = canonical_events(raw, taxonomy=FIVE).events
    assert list(events.columns) == list(COLUMNS)
    assert events.loc[0, "customer_id"] == "00042"
    assert events.loc[0, "event_type"] == "ad_click"
    assert events[["channel", "value", "campaign"]].isna().all().all()
    assert events["value"].dtype == np.float64
    # channel is lower-cased, blank optional values become missing
    raw = pd.DataFrame({"customer_id": ["1", "2"], "timestamp": ["2025-03-01", "2025-03-01"],
                        "event_type": ["ad_click", "ad_click"], "channel": ["Instagram", "  "], "value": ["", "3"],
                        "campaign": ["", "c"]})
    events = canonical_events(raw).events
    assert events["channel"].tolist()[0] == "instagram" and pd.isna(events["channel"].tolist()[1])
    assert np.isnan(events["value"].tolist()[0]) and events["value"].tolist()[1] == 3.0
    assert pd.isna(events["campaign"].tolist()[0])


def test_extra_columns_are_ignored_and_reported():
    raw = pd.DataFrame(RAW)
    raw["session"] = "s1"
    result = canonical_events(raw, taxonomy=FIVE)
    assert_canonical(result.events)
    assert result.ignored_columns == ["session"]


# ---- time zones ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, utc",
    [
        ("2025-03-01T14:30:00+01:00", "2025-03-01 13:30:00"),
        ("2025-03-01T14:30:00-05:00", "2025-03-01 19:30:00"),
        ("2025-03-01T14:30:00Z", "2025-03-01 14:30:00"),
        ("2025-03-01T14:30:00+00:00", "2025-03-01 14:30:00"),
        ("2025-03-01T14:30:00", "2025-03-01 14:30:00"),  # naive = UTC
        ("2025-03-01 14:30:00", "2025-03-01 14:30:00"),
        ("2025-03-01", "2025-03-01 00:00:00"),
        ("2025-03-01T00:30:00+05:30", "2025-02-28 19:00:00"),  # crosses midnight
        ("2025-03-01T14:30:00.123456+01:00", "2025-03-01 13:30:00.123456"),
    ],
)
def test_timestamp_offsets_are_converted_to_utc(tmp_path, text, utc):
    path = write_csv([{"customer_id": "1", "timestamp": text, "event_type": "ad_click"}], tmp_path / "e.csv")
    ts = read_events(path).events["timestamp"]
    assert str(ts.dtype) == TS_DTYPE
    assert ts.iloc[0] == pd.Timestamp(utc, tz="UTC")


def test_mixed_offsets_and_naive_in_one_column():
    raw = pd.DataFrame({"customer_id": ["1"] * 3, "event_type": ["a", "b", "c"],
                        "timestamp": ["2025-03-01 10:00:00", "2025-03-01T10:00:00+01:00", "2025-03-01T10:00:00-05:00"]})
    events = canonical_events(raw).events
    assert events["timestamp"].tolist() == [pd.Timestamp("2025-03-01 09:00", tz="UTC"),
                                            pd.Timestamp("2025-03-01 10:00", tz="UTC"),
                                            pd.Timestamp("2025-03-01 15:00", tz="UTC")]


def test_pandas_tz_aware_column_is_converted_to_utc():
    raw = pd.DataFrame({"customer_id": ["1"], "event_type": ["ad_click"],
                        "timestamp": pd.to_datetime(["2025-03-01 12:00"]).tz_localize("Asia/Tokyo")})
    ts = canonical_events(raw).events["timestamp"]
    assert str(ts.dtype) == TS_DTYPE
    assert ts.iloc[0] == pd.Timestamp("2025-03-01 03:00", tz="UTC")


def test_pandas_naive_datetime_column_is_utc():
    raw = pd.DataFrame({"customer_id": ["1"], "event_type": ["ad_click"],
                        "timestamp": pd.to_datetime(["2025-03-01 12:00:00.123456789"])})
    assert raw["timestamp"].dtype.kind == "M" and raw["timestamp"].dt.tz is None
    ts = canonical_events(raw).events["timestamp"]
    assert str(ts.dtype) == TS_DTYPE
    assert ts.iloc[0] == pd.Timestamp("2025-03-01 12:00:00.123456", tz="UTC")


def test_object_column_of_timestamps_in_several_zones():
    raw = pd.DataFrame({"customer_id": ["1", "1"], "event_type": ["a", "b"],
                        "timestamp": [pd.Timestamp("2025-03-01 12:00", tz="Europe/Paris"),
                                      pd.Timestamp("2025-03-01 12:00", tz="America/New_York")]})
    assert raw["timestamp"].dtype == object
    assert canonical_events(raw).events["timestamp"].tolist() == [
        pd.Timestamp("2025-03-01 11:00", tz="UTC"), pd.Timestamp("2025-03-01 17:00", tz="UTC")]


@pytest.mark.parametrize("tz, unit, expected", [
    ("America/New_York", "ms", "2025-03-01 17:00"),
    ("+01:00", "us", "2025-03-01 11:00"),
    ("UTC", "ns", "2025-03-01 12:00"),
    (None, "ms", "2025-03-01 12:00"),  # naive Parquet timestamp = UTC
])
def test_parquet_timestamp_columns_with_a_time_zone(tmp_path, tz, unit, expected):
    local = pd.Timestamp("2025-03-01 12:00")
    arr = pa.array([local.to_pydatetime()], pa.timestamp(unit))
    if tz is not None:  # 12:00 local wall-clock time in zone tz
        aware = local.tz_localize(tz)
        arr = pa.array([aware.tz_convert("UTC").tz_localize(None).to_pydatetime()], pa.timestamp(unit, tz=tz))
    path = tmp_path / "ts.parquet"
    pq.write_table(pa.table({"customer_id": ["1"], "timestamp": arr, "event_type": ["ad_click"]}), path)
    ts = read_events(path).events["timestamp"]
    assert str(ts.dtype) == TS_DTYPE
    assert ts.iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_same_instant_in_different_offsets_is_the_same_timestamp(tmp_path):
    write_csv([{"customer_id": "1", "timestamp": "2025-03-01T14:30:00+01:00", "event_type": "ad_click"}], tmp_path / "a.csv")
    write_jsonl([{"customer_id": "1", "timestamp": "2025-03-01T08:30:00-05:00", "event_type": "ad_click"}], tmp_path / "b.jsonl")
    result = read_events(tmp_path)
    assert len(result.events) == 1
    assert result.events["timestamp"].iloc[0] == pd.Timestamp("2025-03-01 13:30", tz="UTC")


# ---- de-duplication and order --------------------------------------------------------------------

def test_exact_duplicates_removed_and_counted_near_duplicates_kept():
    base = {"customer_id": "1", "timestamp": "2025-03-01T10:00:00Z", "event_type": "purchase",
            "channel": "email", "value": 10.0, "campaign": "c1"}
    variants = [
        {"customer_id": "2"},
        {"timestamp": "2025-03-01T10:00:01Z"},
        {"event_type": "add_to_cart"},
        {"channel": "search"},
        {"value": 10.5},
        {"campaign": "c2"},
        {"value": None},
    ]
    rows = [base, dict(base), dict(base)] + [{**base, **v} for v in variants]
    result = canonical_events(pd.DataFrame(rows), taxonomy=FIVE)
    assert result.duplicates_removed == 2
    assert len(result.events) == 1 + len(variants)
    assert not result.events.duplicated().any()


def test_unsorted_input_comes_out_sorted():
    rng = np.random.default_rng(0)
    n = 200
    raw = pd.DataFrame({
        "customer_id": rng.choice(["b", "a", "00c", "10"], n),
        "timestamp": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10_000, n), unit="min"),
        "event_type": rng.choice(["purchase", "ad_click", "share"], n),
    })
    events = canonical_events(raw, taxonomy=FIVE).events
    keys = list(zip(events["customer_id"], events["timestamp"], events["event_type"]))
    assert keys == sorted(keys)
    assert isinstance(events.index, pd.RangeIndex) and events.index[0] == 0
    pd.testing.assert_frame_equal(sort_events(events.sample(frac=1, random_state=1)), events)


# ---- validation messages (one per message) -------------------------------------------------------

def test_error_file_not_found(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(JourneyError, match=re.escape(f"{path}: file or folder not found.")) as exc:
        read_events(path)
    assert "relative paths" in exc.value.hint


def test_error_unsupported_file_type(tmp_path):
    path = tmp_path / "events.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(JourneyError, match=re.escape(f"{path}: unsupported file type.")) as exc:
        read_events(path)
    assert ".parquet" in exc.value.hint and ".jsonl" in exc.value.hint


def test_error_folder_without_event_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(JourneyError, match=re.escape(f"{tmp_path}/ (no event files inside): unsupported file type.")):
        read_events(tmp_path)


def test_error_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(JourneyError, match=re.escape(f"{path}: cannot be read as Parquet: ")) as exc:
        read_events(path)
    assert "not truncated" in exc.value.hint


def test_error_truncated_parquet(tmp_path):
    path = write_parquet(RAW, tmp_path / "full.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(JourneyError, match=re.escape(f"{cut}: cannot be read as Parquet: ")):
        read_events(cut)


def test_error_corrupt_gzip(tmp_path):
    path = tmp_path / "events.csv.gz"
    path.write_text("customer_id,timestamp,event_type\n1,2025-03-01,ad_click\n")  # not gzipped
    with pytest.raises(JourneyError, match=re.escape(f"{path}: cannot be read as CSV: ")):
        read_events(path)


def test_error_ragged_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("customer_id,timestamp,event_type\n1,2025-03-01,ad_click\n2,2025-03-01,ad_click,extra,more\n")
    # a row with more fields than the header is a row problem naming the row, the rest stays readable
    with pytest.raises(JourneyError, match=r"row 2\b.*expected 3 fields as in the header, got 5"):
        read_events(path)
    assert len(read_events(path, allow_rejects=True).events) == 1


def test_error_invalid_json_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"customer_id": "1", "timestamp": "2025-03-01", "event_type": "ad_click"}\n{"customer_id": \n')
    with pytest.raises(JourneyError, match=re.escape(f"{path}: cannot be read as JSON Lines: ")):
        read_events(path)


def test_error_missing_required_columns(tmp_path):
    path = write_csv([{"customer_id": "1", "event_type": "ad_click", "ts": "2025-03-01"}], tmp_path / "e.csv")
    msg = f"{path}: missing required column(s) 'timestamp'; found columns ['customer_id', 'event_type', 'ts']."
    with pytest.raises(JourneyError, match=re.escape(msg)) as exc:
        read_events(path)
    assert "customer_id, timestamp and event_type" in exc.value.hint


def test_error_missing_several_required_columns_dataframe():
    with pytest.raises(JourneyError, match=re.escape("<DataFrame>: missing required column(s) 'customer_id', 'event_type'")):
        canonical_events(pd.DataFrame({"timestamp": ["2025-03-01"], "user": ["1"]}))


@pytest.mark.parametrize("column", ["customer_id", "timestamp", "event_type"])
def test_error_missing_required_value(tmp_path, column):
    rows = [dict(RAW[0]), dict(RAW[1]), dict(RAW[2])]
    rows[1][column] = None
    path = write_csv(rows, tmp_path / "e.csv")
    msg = f"{path}, row 2, column '{column}': expected a non-empty value, got nothing"
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        read_events(path, FIVE)
    err = exc.value
    assert err.source == str(path)
    assert [(p.code, p.row, p.column) for p in err.problems] == [("missing", 2, column)]
    assert str(err).startswith(f"{path}: 1 problem(s): ")
    assert "--rejects PATH" in err.hint


def test_error_whitespace_only_value_is_missing():
    raw = pd.DataFrame({"customer_id": ["1", "   "], "timestamp": ["2025-03-01"] * 2, "event_type": ["ad_click"] * 2})
    with pytest.raises(InputError, match=re.escape("<DataFrame>, row 2, column 'customer_id': expected a non-empty value")):
        canonical_events(raw)


def test_error_bad_timestamp(tmp_path):
    rows = [dict(r) for r in RAW]
    rows[2]["timestamp"] = "yesterday"
    path = write_jsonl(rows, tmp_path / "e.jsonl")
    msg = (f"{path}, row 3, column 'timestamp': expected an ISO 8601 timestamp such as "
           f"2025-03-01T14:30:00+01:00, got 'yesterday'")
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        read_events(path, FIVE)
    assert exc.value.problems[0].value == "yesterday"


@pytest.mark.parametrize("bad", ["2025-13-01", "2025-03-01T25:00:00", "1740830400", "01/03/2025 x"])
def test_error_bad_timestamp_variants(bad):
    raw = pd.DataFrame({"customer_id": ["1"], "timestamp": [bad], "event_type": ["ad_click"]})
    with pytest.raises(InputError, match=re.escape(f"<DataFrame>, row 1, column 'timestamp': expected an ISO 8601 "
                                                   f"timestamp such as 2025-03-01T14:30:00+01:00, got {bad!r}")):
        canonical_events(raw)


def test_error_bad_number(tmp_path):
    rows = [dict(r) for r in RAW]
    rows[3]["value"] = "12,50 EUR"
    path = write_csv(rows, tmp_path / "e.csv")
    with pytest.raises(InputError, match=re.escape(f"{path}, row 4, column 'value': expected a finite number, got '12,50 EUR'")):
        read_events(path, FIVE)


def test_error_negative_value(tmp_path):
    rows = [dict(r) for r in RAW]
    rows[0]["value"] = "-5"
    path = write_csv(rows, tmp_path / "e.csv")
    with pytest.raises(InputError, match=re.escape(f"{path}, row 1, column 'value': expected a value >= 0, got '-5'")):
        read_events(path, FIVE)


def test_error_negative_value_from_a_typed_column_names_file_row_column(tmp_path):
    rows = [dict(r) for r in RAW]
    rows[0]["value"] = -5.0
    path = write_parquet(rows, tmp_path / "e.parquet")
    with pytest.raises(InputError, match=re.escape(f"{path}, row 1, column 'value': expected a value >= 0, got ")):
        read_events(path, FIVE)


def test_negative_value_message_shows_the_plain_number():
    raw = pd.DataFrame({"customer_id": ["1"], "timestamp": ["2025-03-01"], "event_type": ["ad_click"], "value": [-5.0]})
    with pytest.raises(InputError) as exc:
        canonical_events(raw)
    assert "np.float64" not in str(exc.value)
    assert "expected a value >= 0, got -5.0" in str(exc.value)


def test_error_unknown_event_type(tmp_path):
    rows = [dict(r) for r in RAW]
    rows[1]["event_type"] = "tiktok_like"
    rows[4]["event_type"] = "story_view"
    path = write_csv(rows, tmp_path / "e.csv")
    msg = f"{path}, row 2, column 'event_type': event type 'tiktok_like' is not in taxonomy 'five_stage'"
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        read_events(path, FIVE)
    err = exc.value
    assert f"{path}, row 5, column 'event_type': event type 'story_view'" in str(err)
    assert "unknown event types ['story_view', 'tiktok_like']" in err.hint
    assert "--unknown-stage STAGE" in err.hint and "--taxonomy FILE" in err.hint
    assert "Hint: unknown event types" in str(err)


def test_unknown_event_types_are_fine_without_a_taxonomy():
    raw = pd.DataFrame({"customer_id": ["1"], "timestamp": ["2025-03-01"], "event_type": ["anything"]})
    assert canonical_events(raw).events["event_type"].tolist() == ["anything"]


def test_unknown_event_type_accepted_with_unknown_stage():
    raw = pd.DataFrame({"customer_id": ["1"], "timestamp": ["2025-03-01"], "event_type": ["tiktok_like"]})
    tx = FIVE.with_unknown(["tiktok_like"], "awareness")
    assert canonical_events(raw, taxonomy=tx).events["event_type"].tolist() == ["tiktok_like"]


def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("customer_id,timestamp,event_type\n")
    with pytest.raises(JourneyError, match=re.escape(f"{path}: contains no event rows.")) as exc:
        read_events(path)
    assert "at least one event" in exc.value.hint


def test_error_empty_jsonl_and_dataframe(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(JourneyError, match=re.escape(f"{path}: contains no event rows.")):
        read_events(path)
    with pytest.raises(JourneyError, match=re.escape("<DataFrame>: contains no event rows.")):
        canonical_events(pd.DataFrame(columns=["customer_id", "timestamp", "event_type"]))


def test_error_lists_every_problem_and_counts_the_rest(tmp_path):
    rows = [{"customer_id": str(i), "timestamp": f"bad-{i}", "event_type": "ad_click"} for i in range(7)]
    path = write_csv(rows, tmp_path / "e.csv")
    with pytest.raises(InputError, match=re.escape(f"{path}: 7 problem(s): ")) as exc:
        read_events(path)
    err = exc.value
    assert "(and 2 more)." in err.message
    assert [p.row for p in err.problems] == list(range(1, 8))
    assert all(p.code == "bad_timestamp" and p.column == "timestamp" for p in err.problems)
    assert err.problems[0].as_dict() == {"code": "bad_timestamp", "row": 1, "column": "timestamp",
                                         "message": err.problems[0].message}


def test_error_in_second_file_of_a_folder_names_that_file(tmp_path):
    write_csv(RAW, tmp_path / "a.csv")
    bad = tmp_path / "b.csv"
    write_csv([{"customer_id": "1", "timestamp": "2025-03-01", "event_type": "ad_click", "value": "-1"}], bad)
    with pytest.raises(InputError, match=re.escape(f"{bad}, row 1, column 'value': expected a value >= 0, got '-1'")):
        read_events(tmp_path, FIVE)


# ---- rejects mode --------------------------------------------------------------------------------

def _rejects_input() -> list[dict]:
    good = [dict(r) for r in RAW]
    return [
        good[0],
        {"customer_id": "", "timestamp": "yesterday", "event_type": "purchase", "channel": "x", "value": -3,
         "campaign": None},  # three problems in one row
        good[1],
        good[0],  # exact duplicate of row 1
        {**good[2], "event_type": "tiktok_like"},  # unknown event type
        good[2],
        {**good[2], "value": "abc"},
        good[3],
        good[4],
        good[4],  # exact duplicate of row 9
    ]


def test_rejects_mode_returns_valid_rows_and_one_reason_per_invalid_row(tmp_path):
    rows = _rejects_input()
    path = write_csv(rows, tmp_path / "e.csv")
    result = read_events(path, FIVE, allow_rejects=True)
    assert_canonical(result.events)
    rej = result.rejects
    assert list(rej.columns[:3]) == ["source", "row", "reject_reason"]
    assert set(COLUMNS) <= set(rej.columns)
    assert rej["source"].tolist() == [str(path)] * 3
    assert rej["row"].tolist() == [2, 5, 7]
    reason = rej["reject_reason"].tolist()
    assert reason[0] == "; ".join([
        f"{path}, row 2, column 'customer_id': expected a non-empty value, got nothing",
        f"{path}, row 2, column 'timestamp': expected an ISO 8601 timestamp such as 2025-03-01T14:30:00+01:00, got 'yesterday'",
        f"{path}, row 2, column 'value': expected a value >= 0, got '-3'",
    ])
    assert reason[1] == f"{path}, row 5, column 'event_type': event type 'tiktok_like' is not in taxonomy 'five_stage'"
    assert reason[2] == f"{path}, row 7, column 'value': expected a finite number, got 'abc'"
    # the raw values are kept for the user to fix
    assert rej.loc[0, "timestamp"] == "yesterday"
    assert rej.loc[1, "event_type"] == "tiktok_like"
    assert result.n_problems == 5
    assert result.unknown_event_types == ["tiktok_like"]
    assert result.duplicates_removed == 2
    assert len(result.events) + len(rej) + result.duplicates_removed == len(rows)


def test_validate_events_reports_without_raising():
    rows = _rejects_input()
    result = validate_events(pd.DataFrame(rows), "batch-7", FIVE, first_row=101)
    assert_canonical(result.events)
    assert result.rejects["row"].tolist() == [102, 105, 107]
    assert result.rejects["source"].tolist() == ["batch-7"] * 3
    assert {(p.code, p.row, p.column) for p in result.problems} == {
        ("missing", 102, "customer_id"), ("bad_timestamp", 102, "timestamp"), ("negative_value", 102, "value"),
        ("unknown_event_type", 105, "event_type"), ("bad_number", 107, "value")}
    assert len(result.events) + len(result.rejects) + result.duplicates_removed == len(rows)


def test_rejects_mode_over_a_folder_keeps_every_row(tmp_path):
    rows = _rejects_input()
    a = write_jsonl(rows[:5], tmp_path / "a.jsonl")
    b = write_parquet(rows[5:], tmp_path / "b.parquet")
    result = read_events(tmp_path, FIVE, allow_rejects=True)
    assert_canonical(result.events)
    assert list(zip(result.rejects["source"], result.rejects["row"])) == [(str(a), 2), (str(a), 5), (str(b), 2)]
    assert result.duplicates_removed == 2  # one within b, one across files (row 4 of a = row 1 of a)
    assert len(result.events) + len(result.rejects) + result.duplicates_removed == len(rows)


def test_rejects_mode_when_every_row_is_invalid():
    raw = pd.DataFrame({"customer_id": ["1", "2"], "timestamp": ["x", "y"], "event_type": ["ad_click", "ad_click"]})
    result = canonical_events(raw, allow_rejects=True)
    assert len(result.events) == 0
    assert list(result.events.columns) == list(COLUMNS)
    assert result.rejects["row"].tolist() == [1, 2]
    assert result.n_problems == 2


def test_rejects_mode_still_raises_for_file_level_errors(tmp_path):
    path = write_csv([{"customer_id": "1", "event_type": "ad_click"}], tmp_path / "e.csv")
    with pytest.raises(JourneyError, match="missing required column"):
        read_events(path, allow_rejects=True)
