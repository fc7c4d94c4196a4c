"""Batch scoring (``journey score``): local engine, Spark engine, rejects, atomic output, CLI.

The reference everywhere is the one scoring path: ``journey_stage.model.scoring.score_events`` on the
canonical events of ``journey_stage.core.io.read_events``. The local engine must give the same frame for any
chunk size, partition count, input layout and output format; the Spark engine (local mode, marked
slow) must give the same file as the local engine.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers in tests/
from batch_fixtures import batch_events, batch_model, model_env  # noqa: E402,F401

import journey_stage.serving.local as local  # noqa: E402
import journey_stage.serving.partition as partition  # noqa: E402
from journey_stage.core import io  # noqa: E402
from journey_stage.core.errors import InputError, JourneyError  # noqa: E402
from journey_stage.serving.batch import score_file  # noqa: E402
from journey_stage.serving.partition import partition_count, partition_of  # noqa: E402
from journey_stage.model.scoring import output_columns, score_events  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROB = lambda c: c.endswith("_probability") or c.startswith("stage_probability_")  # noqa: E731


def reference(predictor, path, as_of=None, reasons=False) -> pd.DataFrame:
    """score_events on the whole canonical input, as Python users call it."""
    ev = io.read_events(path, predictor.taxonomy).events
    t = as_of if as_of is not None else ev["timestamp"].max()
    return score_events(predictor, ev, t, reasons=reasons)


def by_customer(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("customer_id", ignore_index=True)


def assert_same(a: pd.DataFrame, b: pd.DataFrame, exact: bool = True) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    a, b = by_customer(a), by_customer(b)
    for c in a.columns:
        if PROB(c):
            np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=0, atol=0 if exact else 1e-12, err_msg=c)
        elif c == "eligible":
            assert (a[c].astype(bool).to_numpy() == b[c].astype(bool).to_numpy()).all()
        else:
            left = a[c].astype(object).where(a[c].notna(), None).tolist()
            right = b[c].astype(object).where(b[c].notna(), None).tolist()
            assert left == right, c


def read_out(path: Path) -> pd.DataFrame:
    if path.name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path, dtype={"customer_id": str, "model_version": str, "as_of": str})
    return pd.read_parquet(path)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def events_parquet(tmp_path_factory, batch_events) -> Path:
    path = tmp_path_factory.mktemp("batch-in") / "events.parquet"
    io.write_table(batch_events, path, taxonomy="five_stage")
    return path


def with_bad_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Text copy of ``df`` with invalid rows of every kind and exact duplicates inserted."""
    raw = df.drop(columns=["true_stage"]).astype({"value": object}).copy()
    raw["timestamp"] = raw["timestamp"].astype(str)
    raw["value"] = df["value"].map(lambda v: "" if pd.isna(v) else repr(float(v)))
    bad = raw.sample(12, random_state=1).copy()
    bad.iloc[0, bad.columns.get_loc("customer_id")] = ""
    bad.iloc[1, bad.columns.get_loc("timestamp")] = "yesterday"
    bad.iloc[2, bad.columns.get_loc("event_type")] = "telepathy"
    bad.iloc[3, bad.columns.get_loc("value")] = "-5"
    bad.iloc[4, bad.columns.get_loc("value")] = "lots"
    bad.iloc[5, bad.columns.get_loc("event_type")] = ""
    bad.iloc[6, bad.columns.get_loc("timestamp")] = ""
    bad.iloc[7, bad.columns.get_loc("customer_id")] = "   "
    bad.iloc[8, bad.columns.get_loc("event_type")] = "mind_reading"
    bad.iloc[9, [bad.columns.get_loc("customer_id"), bad.columns.get_loc("timestamp")]] = ["", "not a date"]
    bad = bad.iloc[:10]
    dups = raw.sample(25, random_state=2)
    out = pd.concat([raw.iloc[:3000], bad.iloc[:5], dups, raw.iloc[3000:], bad.iloc[5:]], ignore_index=True)
    return out


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory, batch_events) -> Path:
    path = tmp_path_factory.mktemp("batch-bad") / "events.csv"
    with_bad_rows(batch_events).to_csv(path, index=False)
    return path


# ---- the local engine --------------------------------------------------------------------------

def test_local_equals_score_events(batch_model, events_parquet, tmp_path):
    out = tmp_path / "scores.parquet"
    counts = score_file(events_parquet, out, predictor=batch_model.predictor)
    ref = reference(batch_model.predictor, events_parquet)
    got = pd.read_parquet(out)
    assert list(got.columns) == output_columns(batch_model.predictor)
    assert_same(got, ref)
    pd.testing.assert_frame_equal(by_customer(got), by_customer(ref))  # dtypes too
    assert counts["scored"] == len(ref) > 50
    n_customers = io.read_events(events_parquet, batch_model.predictor.taxonomy).events["customer_id"].nunique()
    assert counts["customers"] == n_customers and counts["ineligible"] == n_customers - len(ref) > 0
    assert counts["rejected"] == 0
    assert counts["as_of"] == ref["as_of"].iloc[0]
    assert leftovers(tmp_path, {"scores.parquet"}) == []


def test_rows_grouped_by_partition_then_customer(batch_model, events_parquet, tmp_path):
    out = tmp_path / "scores.parquet"
    counts = score_file(events_parquet, out, predictor=batch_model.predictor, partitions=5)
    got = pd.read_parquet(out)
    part = np.array([zlib.crc32(c.encode()) % counts["partitions"] for c in got["customer_id"]])
    assert counts["partitions"] == 5
    assert (np.diff(part) >= 0).all()
    for p in np.unique(part):
        ids = got["customer_id"][part == p].tolist()
        assert ids == sorted(ids)
    assert (partition_of(got["customer_id"], 5) == part).all()


@pytest.mark.parametrize("batch_rows,partitions,spill_bytes", [(1_000_000, 1, None), (3_001, 7, None), (2_500, 3, 0)])
def test_chunks_partitions_and_spill_do_not_change_answers(batch_model, bad_csv, tmp_path, monkeypatch, batch_rows, partitions, spill_bytes):
    if spill_bytes is not None:  # force the on-disk spill
        monkeypatch.setattr(local, "SPILL_MEMORY_BYTES", spill_bytes)
    out, rej = tmp_path / "s.parquet", tmp_path / "rejects.parquet"
    counts = score_file(bad_csv, out, predictor=batch_model.predictor, rejects=rej, batch_rows=batch_rows, partitions=partitions)
    v = io.read_events(bad_csv, batch_model.predictor.taxonomy, allow_rejects=True)
    ref = score_events(batch_model.predictor, v.events, v.events["timestamp"].max())
    assert_same(pd.read_parquet(out), ref)
    pd.testing.assert_frame_equal(pd.read_parquet(rej), pd.read_parquet(_write(v.rejects, tmp_path / "ref_rejects.parquet")))
    assert counts["duplicates"] == v.duplicates_removed
    assert counts["events"] == len(v.events)
    assert leftovers(tmp_path, {"s.parquet", "rejects.parquet", "ref_rejects.parquet"}) == []


def test_worker_processes_give_the_same_files(batch_model, bad_csv, batch_events, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bad.csv").write_bytes(bad_csv.read_bytes())
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(batch_events.drop(columns=["true_stage"]).iloc[::-1], preserve_index=False)
    pq.write_table(table, folder / "b.parquet", row_group_size=1500)  # several read units, unsorted
    counts = {}
    for w in (1, 2):
        counts[w] = score_file(folder, tmp_path / f"w{w}.csv", predictor=batch_model.predictor, workers=w, batch_rows=2000,
                               partitions=5, rejects=tmp_path / f"rej{w}.parquet")
    assert counts[2]["workers"] == 2
    assert (tmp_path / "w1.csv").read_text() == (tmp_path / "w2.csv").read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rej1.parquet"), pd.read_parquet(tmp_path / "rej2.parquet"))
    drop = ("seconds", "workers", "out")
    assert {k: v for k, v in counts[1].items() if k not in drop} == {k: v for k, v in counts[2].items() if k not in drop}
    v = io.read_events(folder, batch_model.predictor.taxonomy, allow_rejects=True)
    assert_same(read_out(tmp_path / "w2.csv"), score_events(batch_model.predictor, v.events, v.events["timestamp"].max()))
    assert counts[2]["duplicates"] == v.duplicates_removed
    assert leftovers(tmp_path, {"in", "w1.csv", "w2.csv", "rej1.parquet", "rej2.parquet"}) == []


def test_worker_error_is_one_clear_error(batch_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    io.write_table(pd.DataFrame({"customer_id": ["a"], "when": ["2025-01-01"], "event_type": ["ad_click"]}), folder / "x.parquet")
    with pytest.raises(JourneyError, match="missing required column\\(s\\) 'timestamp'") as exc:
        score_file(folder, tmp_path / "s.parquet", predictor=batch_model.predictor, workers=2)
    assert "rename your columns" in exc.value.hint
    assert leftovers(tmp_path, {"in"}) == []


def _write(df, path):
    io.write_table(df, path)
    return path


def test_explicit_as_of_and_reasons(batch_model, events_parquet, tmp_path):
    as_of = "2025-10-01T12:00:00+02:00"
    out = tmp_path / "r.parquet"
    counts = score_file(events_parquet, out, predictor=batch_model.predictor, as_of=as_of, reasons=True, partitions=4)
    ref = reference(batch_model.predictor, events_parquet, as_of=pd.Timestamp(as_of), reasons=True)
    got = pd.read_parquet(out)
    assert list(got.columns) == output_columns(batch_model.predictor, reasons=True)
    assert_same(got, ref)
    assert set(got["as_of"]) == {"2025-10-01T10:00:00+00:00"}
    assert counts["as_of"] == "2025-10-01T10:00:00+00:00"
    assert got["reasons"].str.startswith("{").all()
    # customers whose first event is after as_of are not scored and counted as ineligible
    ev = io.read_events(events_parquet, batch_model.predictor.taxonomy).events
    assert counts["customers"] == ev["customer_id"].nunique()
    assert counts["scored"] + counts["ineligible"] == counts["customers"]


def test_bad_as_of_is_one_clear_error(batch_model, events_parquet, tmp_path):
    with pytest.raises(JourneyError, match="--as-of 'last tuesday': not a timestamp"):
        score_file(events_parquet, tmp_path / "x.parquet", predictor=batch_model.predictor, as_of="last tuesday")
    assert leftovers(tmp_path, set()) == []


@pytest.mark.parametrize("name", ["scores.csv", "scores.csv.gz"])
def test_csv_output_equals_parquet_output(batch_model, events_parquet, tmp_path, name):
    score_file(events_parquet, tmp_path / "scores.parquet", predictor=batch_model.predictor)
    score_file(events_parquet, tmp_path / name, predictor=batch_model.predictor)
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name, "rt") as fh:
            assert fh.readline().strip().split(",") == output_columns(batch_model.predictor)
    pq_out = pd.read_parquet(tmp_path / "scores.parquet")
    csv_out = read_out(tmp_path / name)
    assert list(csv_out["customer_id"]) == list(pq_out["customer_id"])  # same row order
    assert_same(csv_out, pq_out)  # floats round-trip exactly through CSV text


def test_folder_of_mixed_files(batch_model, batch_events, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = batch_events.drop(columns=["true_stage"])
    a, b, c = raw.iloc[:4000], raw.iloc[4000:9000], raw.iloc[9000:]
    io.write_table(a, folder / "a.parquet")
    b.assign(timestamp=b["timestamp"].astype(str)).to_csv(folder / "b.csv", index=False)
    pd.concat([c, a.iloc[:50]]).assign(timestamp=lambda d: d["timestamp"].astype(str)).to_json(folder / "c.jsonl", orient="records", lines=True)
    (folder / "_SUCCESS").write_text("")
    out = tmp_path / "s.parquet"
    counts = score_file(folder, out, predictor=batch_model.predictor, batch_rows=1500)
    v = io.read_events(folder, batch_model.predictor.taxonomy)
    ref = score_events(batch_model.predictor, v.events, v.events["timestamp"].max())
    assert_same(pd.read_parquet(out), ref)
    assert counts["duplicates"] == v.duplicates_removed >= 50  # across files too
    assert counts["events"] + counts["rejected"] + counts["duplicates"] == counts["input_rows"] == len(raw) + 50


def test_rejects_file_reasons_and_counts(batch_model, bad_csv, tmp_path):
    out, rej = tmp_path / "s.parquet", tmp_path / "rejects.csv"
    counts = score_file(bad_csv, out, predictor=batch_model.predictor, rejects=rej, batch_rows=2000)
    rejects = pd.read_csv(rej, dtype=str, keep_default_na=False)
    assert counts["rejected"] == len(rejects) == 10
    assert list(rejects.columns[:3]) == ["source", "row", "reject_reason"]
    assert (rejects["source"] == str(bad_csv)).all()
    assert all(r.strip() for r in rejects["reject_reason"])
    joined = " | ".join(rejects["reject_reason"])
    for needle in ("column 'customer_id': expected a non-empty value", "expected an ISO 8601 timestamp", "'telepathy' is not in taxonomy",
                   "expected a value >= 0, got '-5'", "expected a finite number, got 'lots'"):
        assert needle in joined
    # the row numbers point at the file's data rows
    raw = pd.read_csv(bad_csv, dtype=str, keep_default_na=False)
    for _, r in rejects.iterrows():
        assert raw.iloc[int(r["row"]) - 1]["event_type"] == r["event_type"]
    # nothing lost: every input row is a valid event, a rejected row or a removed duplicate
    n_input = len(raw)
    assert counts["input_rows"] == n_input
    assert counts["events"] + counts["rejected"] + counts["duplicates"] == n_input
    assert counts["duplicates"] >= 25


def test_without_rejects_bad_rows_stop_with_the_validation_error(batch_model, bad_csv, tmp_path):
    with pytest.raises(InputError) as exc:
        score_file(bad_csv, tmp_path / "s.parquet", predictor=batch_model.predictor, batch_rows=2000)
    with pytest.raises(InputError) as ref:  # the same message as reading the whole file at once
        io.read_events(bad_csv, batch_model.predictor.taxonomy)
    assert exc.value.message == ref.value.message
    assert "11 problem(s)" in exc.value.message
    assert "--rejects PATH" in exc.value.hint and "'mind_reading', 'telepathy'" in exc.value.hint
    assert leftovers(tmp_path, set()) == []


def test_all_rows_rejected_gives_an_empty_file_with_the_columns(batch_model, tmp_path):
    src = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": ["a", "b"], "timestamp": ["x", "y"], "event_type": ["ad_click", "purchase"]}).to_csv(src, index=False)
    out = tmp_path / "s.csv"
    counts = score_file(src, out, predictor=batch_model.predictor, rejects=tmp_path / "r.parquet")
    assert counts["scored"] == 0 and counts["rejected"] == 2
    assert list(pd.read_csv(out).columns) == output_columns(batch_model.predictor)


@pytest.mark.parametrize("spill_bytes", [None, 0])
@pytest.mark.parametrize("name", ["scores.parquet", "scores.csv"])
def test_interrupt_leaves_no_output_and_no_temp_file(batch_model, events_parquet, tmp_path, monkeypatch, name, spill_bytes):
    if spill_bytes is not None:
        monkeypatch.setattr(local, "SPILL_MEMORY_BYTES", spill_bytes)
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return score_events(*args, **kwargs)

    monkeypatch.setattr(partition, "score_events", interrupted)
    out_dir = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        score_file(events_parquet, out_dir / name, predictor=batch_model.predictor, partitions=6, rejects=out_dir / "rejects.parquet")
    assert calls["n"] == 3
    assert leftovers(out_dir, set()) == []  # no output, no temp file, no spill folder, no rejects


def test_interrupt_keeps_the_previous_output(batch_model, events_parquet, tmp_path, monkeypatch):
    out = tmp_path / "scores.parquet"
    score_file(events_parquet, out, predictor=batch_model.predictor)
    before = out.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(partition, "score_events", boom)
    with pytest.raises(RuntimeError):
        score_file(events_parquet, out, predictor=batch_model.predictor)
    assert out.read_bytes() == before
    assert leftovers(tmp_path, {"scores.parquet"}) == []


def test_clear_errors_before_any_work(batch_model, events_parquet, tmp_path):
    with pytest.raises(JourneyError, match="file or folder not found"):
        score_file(tmp_path / "nope.parquet", tmp_path / "s.parquet", predictor=batch_model.predictor)
    with pytest.raises(JourneyError, match="unsupported output file type"):
        score_file(events_parquet, tmp_path / "s.xlsx", predictor=batch_model.predictor)
    with pytest.raises(JourneyError, match="expected local or spark"):
        score_file(events_parquet, tmp_path / "s.parquet", predictor=batch_model.predictor, engine="dask")
    with pytest.raises(JourneyError, match="partitions"):
        score_file(events_parquet, tmp_path / "s.parquet", predictor=batch_model.predictor, partitions=0)
    assert leftovers(tmp_path, set()) == []


def test_partitioning_is_stable_and_grows_with_the_input():
    ids = pd.Series(["c1", "c2", "c1", "ü-42", "c3"])
    p = partition_of(ids, 16)
    assert p[0] == p[2] and list(p) == [zlib.crc32(s.encode()) % 16 for s in ids]
    assert partition_count(1000, 16) == 16
    assert partition_count(100 * partition.TARGET_EVENTS_PER_PARTITION, 16) == 100


def test_canonical_partition_equals_sort_events_of_drop_duplicates():
    import pyarrow as pa

    from journey_stage.core.events import sort_events

    rng = np.random.default_rng(5)
    n = 4000
    frame = pd.DataFrame({
        "customer_id": pd.array(rng.choice(["c1", "c10", "c2", "Z", "é", "ü-42", "c1 "] + [f"x{i}" for i in range(400)], n), dtype="str"),
        "timestamp": pd.to_datetime(rng.integers(0, 50, n) * 1_000_000_000, utc=True).astype("datetime64[us, UTC]"),
        "event_type": pd.array(rng.choice(["purchase", "ad_click", "share", "page_view"], n), dtype="str"),
        "channel": pd.array(rng.choice(["email", "instagram", None, "zz"], n), dtype="str"),
        "value": rng.choice([np.nan, 0.0, 1.5, 10.0, 2.25], n),
        "campaign": pd.array(rng.choice([None, "a", "b", "B"], n), dtype="str"),
    })
    frame = pd.concat([frame, frame.sample(500, random_state=1)], ignore_index=True)  # exact duplicates
    table = pa.Table.from_pandas(frame, schema=partition.EVENT_SCHEMA, preserve_index=False)
    got, dups, customers = partition.canonical_partition(table)
    ref = sort_events(frame.drop_duplicates(ignore_index=True))
    assert dups == len(frame) - len(ref) >= 500
    assert customers == frame["customer_id"].nunique()
    pd.testing.assert_frame_equal(got, ref)
    # only customers active in (lo, hi]: their full histories, nothing else
    lo, hi = pd.Timestamp(20, unit="s", tz="UTC").value // 1000, pd.Timestamp(21, unit="s", tz="UTC").value // 1000
    some, _, customers = partition.canonical_partition(table, (lo, hi))
    ts = ref["timestamp"].dt.as_unit("us").astype("int64")  # microseconds
    active = set(ref.loc[(ts > lo) & (ts <= hi), "customer_id"])
    assert 0 < len(active) < customers
    pd.testing.assert_frame_equal(some, ref[ref["customer_id"].isin(active)].reset_index(drop=True))


def test_progress_bar_is_used(batch_model, events_parquet, tmp_path):
    from rich.console import Console
    from rich.progress import Progress

    seen = []

    def factory():
        bar = Progress(console=Console(file=open("/dev/null", "w")))
        seen.append(bar)
        return bar

    score_file(events_parquet, tmp_path / "s.parquet", predictor=batch_model.predictor, partitions=4, progress=factory)
    (bar,) = seen
    score_task = [t for t in bar.tasks if t.description.startswith("scoring")]
    assert score_task and score_task[0].total == 4 and score_task[0].completed == 4


# ---- the command line --------------------------------------------------------------------------

def test_cli_score_end_to_end(model_env, events_parquet, tmp_path):
    from typer.testing import CliRunner

    from journey_stage.cli import app

    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["score", "--events", str(events_parquet), "--out", str(out), "--model", model_env.uri])
    assert result.exit_code == 0, result.output
    ref = reference(model_env.predictor, events_parquet)
    assert f"scored {len(ref):,} customers" in result.stdout
    assert "rows rejected" in result.stdout
    assert_same(read_out(out), ref)


def test_cli_bad_path_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "-m", "journey_stage.cli", "score", "--events", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "s.parquet")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ") and "missing.parquet: file or folder not found." in lines[0]
    assert all(ln.startswith(("error:", "hint:")) for ln in lines) and len(lines) <= 2
    assert not (tmp_path / "s.parquet").exists()


def test_cli_bad_rows_without_rejects(model_env, bad_csv, tmp_path):
    from typer.testing import CliRunner

    from journey_stage.cli import app

    result = CliRunner().invoke(app, ["score", "--events", str(bad_csv), "--out", str(tmp_path / "s.parquet"), "--model", model_env.uri])
    assert result.exit_code == 2
    assert "11 problem(s)" in result.stderr and "--rejects PATH" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.parquet").exists()


# ---- Spark (local mode, started by the test) ---------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark")
    from journey_stage.serving.spark import get_session

    session, _ = get_session("local[2]")
    yield session
    session.stop()


@pytest.mark.slow
@pytest.mark.parametrize("reasons", [False, True])
def test_spark_equals_local_parquet(spark, batch_model, events_parquet, tmp_path, reasons):
    from journey_stage.serving.spark import score_spark

    # both kinds of binary model go through both engines: LightGBM alone and blended with the linear model
    assert {m.linear is None for t, m in batch_model.predictor.models.items() if t != "stage"} == {True, False}

    loc, spk = tmp_path / "local.parquet", tmp_path / "spark.parquet"
    c_local = score_file(events_parquet, loc, predictor=batch_model.predictor, reasons=reasons, partitions=8)
    c_spark = score_file(events_parquet, spk, predictor=batch_model.predictor, reasons=reasons, partitions=8, engine="spark")
    a, b = pd.read_parquet(loc), pd.read_parquet(spk)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-12)  # same rows in the same order
    assert_same(a, b)  # in fact bit for bit
    keys = ("scored", "ineligible", "rejected", "duplicates", "input_rows", "events", "customers", "partitions", "as_of")
    assert {k: c_local[k] for k in keys} == {k: c_spark[k] for k in keys}
    # and score_spark called directly, on the session of the test
    c2 = score_spark(events_parquet, tmp_path / "direct.csv", predictor=batch_model.predictor, reasons=reasons, spark=spark, partitions=8)
    assert_same(read_out(tmp_path / "direct.csv"), a)
    assert c2["scored"] == c_local["scored"]
    assert leftovers(tmp_path, {"local.parquet", "spark.parquet", "direct.csv"}) == []


@pytest.mark.slow
def test_spark_equals_local_with_rejects_csv_and_folder(spark, batch_model, bad_csv, batch_events, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad.csv").write_bytes(bad_csv.read_bytes())
    raw = batch_events.drop(columns=["true_stage"]).iloc[:5000]
    io.write_table(raw, folder / "more.parquet")
    raw.iloc[:40].assign(timestamp=lambda d: d["timestamp"].astype(str)).to_json(folder / "dups.jsonl", orient="records", lines=True)
    for engine in ("local", "spark"):
        counts = score_file(folder, tmp_path / f"{engine}.csv", predictor=batch_model.predictor, engine=engine,
                            rejects=tmp_path / f"{engine}-rejects.parquet", batch_rows=2000)
        if engine == "local":
            c_local = counts
    keys = ("scored", "ineligible", "rejected", "duplicates", "input_rows", "events", "customers", "partitions", "as_of")
    assert {k: c_local[k] for k in keys} == {k: counts[k] for k in keys}
    assert counts["events"] + counts["rejected"] + counts["duplicates"] == counts["input_rows"]
    assert (tmp_path / "local.csv").read_text() == (tmp_path / "spark.csv").read_text()  # identical files
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local-rejects.parquet"), pd.read_parquet(tmp_path / "spark-rejects.parquet"))
    v = io.read_events(folder, batch_model.predictor.taxonomy, allow_rejects=True)
    assert_same(read_out(tmp_path / "spark.csv"), score_events(batch_model.predictor, v.events, v.events["timestamp"].max()))


@pytest.mark.slow
def test_spark_bad_rows_without_rejects_is_the_same_error(spark, batch_model, bad_csv, tmp_path):
    with pytest.raises(InputError) as exc:
        score_file(bad_csv, tmp_path / "s.parquet", predictor=batch_model.predictor, engine="spark")
    with pytest.raises(InputError) as ref:
        io.read_events(bad_csv, batch_model.predictor.taxonomy)
    assert exc.value.message == ref.value.message and "--rejects PATH" in exc.value.hint
    assert leftovers(tmp_path, set()) == []


@pytest.mark.slow
def test_spark_crc32_partition_matches_local(spark):
    from pyspark.sql import functions as F

    ids = ["c0000001", "c0000002", "ü-42", "x"]
    rows = spark.createDataFrame([(i,) for i in ids], "customer_id string").select(
        "customer_id", F.pmod(F.crc32(F.col("customer_id").cast("binary")), F.lit(7)).alias("p")).collect()
    assert {r.customer_id: r.p for r in rows} == dict(zip(ids, partition_of(pd.Series(ids), 7).tolist()))


# ---- journey_stage.model.scoring.score_events: the column-wise rewrite equals the original per-row loop -----

def _score_events_loop(predictor, events, as_of=None, *, playbook=None, reasons=False, eligible_only=True, top_k=3):
    """The original (per-customer loop) body of journey_stage.model.scoring.score_events, kept as the reference."""
    import json

    from journey_stage.features.build import eligible
    from journey_stage.features.encode import encode, from_us, to_us
    from journey_stage.model.playbook import load_playbook
    from journey_stage.core.coerce import finite_or_none as _num
    from journey_stage.model.scoring import _role
    from journey_stage.model.predictor import BINARY_TASKS

    playbook = playbook or load_playbook()
    cols = output_columns(predictor, reasons)
    if len(events) == 0:
        return pd.DataFrame(columns=cols)
    t_us = to_us(as_of) if as_of is not None else int(events["timestamp"].max().value // 1000)
    enc = encode(events, predictor.taxonomy)
    ff = predictor.features(enc, t_us)
    elig = eligible(ff, predictor.settings)
    rows = np.flatnonzero(elig) if eligible_only else np.arange(len(ff.customer_ids))
    pred = predictor.predict(ff, rows)
    stage = pred.stage
    why = predictor.reasons(ff, rows, stage, top_k) if reasons else None
    needed = sorted(playbook.features_needed)
    feat_idx = [predictor.feature_names.index(n) for n in needed]
    out = {c: [] for c in cols}
    name = predictor.info.get("name", "")
    version = str(predictor.info.get("version", ""))
    as_of_iso = from_us(t_us).isoformat()
    for i, r in enumerate(rows):
        probs = {t: _num(pred.binary[t][i]) for t in BINARY_TASKS}
        role = _role(predictor, stage[i])
        feats = {n: float(ff.X[r, j]) for n, j in zip(needed, feat_idx)}
        nba = playbook.decide(role, probs, feats)
        out["customer_id"].append(str(ff.customer_ids[r]))
        out["as_of"].append(as_of_iso)
        out["eligible"].append(bool(elig[r]))
        out["observed_stage"].append(pred.observed_stage[i])
        out["stage"].append(stage[i])
        for j, s in enumerate(pred.stage_names):
            out[f"stage_probability_{s}"].append(_num(pred.stage_proba[i, j]))
        for t in BINARY_TASKS:
            out[f"{t}_probability"].append(probs[t])
        out["next_best_action"].append(nba["action"])
        out["next_best_action_rule"].append(nba["rule"])
        out["next_best_action_message"].append(nba["message"])
        out["next_best_action_because"].append(nba["because"])
        out["model_name"].append(name)
        out["model_version"].append(version)
        if reasons:
            out["reasons"].append(json.dumps(why[i], sort_keys=True))
    frame = pd.DataFrame(out, columns=cols)
    for c in cols:
        if c.endswith("_probability") or c.startswith("stage_probability_"):
            frame[c] = frame[c].astype("float64")
    return frame


@pytest.mark.parametrize("drop_models", [(), ("churn",), ("stage", "conversion")])
@pytest.mark.parametrize("reasons,eligible_only", [(False, True), (True, True), (False, False)])
def test_score_events_columnwise_equals_the_row_loop(batch_model, batch_events, drop_models, reasons, eligible_only):
    import copy

    pred = copy.copy(batch_model.predictor)
    pred.models = {k: v for k, v in batch_model.predictor.models.items() if k not in drop_models}
    from journey_stage.core.events import canonical_events

    ev = canonical_events(batch_events.iloc[:6000], "x", pred.taxonomy).events
    for as_of in (None, "2025-11-01T00:00:00Z"):
        new = score_events(pred, ev, as_of, reasons=reasons, eligible_only=eligible_only)
        old = _score_events_loop(pred, ev, as_of, reasons=reasons, eligible_only=eligible_only)
        assert len(new) > 10
        pd.testing.assert_frame_equal(new, old, check_exact=True)
    empty = ev.iloc[:0]
    pd.testing.assert_frame_equal(score_events(pred, empty, None), _score_events_loop(pred, empty, None))
    late = score_events(pred, ev, "2000-01-01")  # nobody has history yet: no rows, same columns
    pd.testing.assert_frame_equal(late, _score_events_loop(pred, ev, "2000-01-01"))


@pytest.mark.slow
def test_spark_reads_a_uri_itself(spark, batch_model, events_parquet, tmp_path):
    score_file(events_parquet, tmp_path / "local.parquet", predictor=batch_model.predictor)
    counts = score_file(events_parquet.resolve().as_uri(), tmp_path / "spark.parquet", predictor=batch_model.predictor, engine="spark")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "spark.parquet"))
    assert counts["partitions"] == 16 and counts["rejected"] == 0
