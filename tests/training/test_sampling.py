"""Training on a customer sample above ``eval_customers_cap`` (issue 17): the sample is
deterministic and nested, keeps whole customers, never applies at or below the cap, is read from
Parquet for the sampled customers only (rows counted as they reach pandas), and report.json says
what was sampled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journey_stage.core.errors import InputError
from journey_stage.core.events import canonical_events
from journey_stage.core.io import read_events
from journey_stage.core.settings import TASKS, Settings, build_settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.synthetic.generate import generate_events
from journey_stage.training import sampling
from journey_stage.training.pipeline import train_and_evaluate

TAX = load_taxonomy("five_stage")
FAST = {"n_estimators": 40, "bootstrap_rounds": 30, "max_train_rows": 20000}


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return canonical_events(generate_events(2600, seed=5, days=300), "events", TAX).events


@pytest.fixture(scope="module")
def parquet(tmp_path_factory, events):
    """The log as Parquet with small row groups (so the filter runs over many of them)."""
    path = tmp_path_factory.mktemp("log") / "events.parquet"
    pq.write_table(pa.Table.from_pandas(generate_events(2600, seed=5, days=300), preserve_index=False), path, row_group_size=7000)
    return path


def test_choice_is_deterministic_order_free_and_nested():
    ids = np.array([f"c{i:05d}" for i in range(5000)], dtype=object)
    a = sampling.choose_customers(ids, 1200)
    b = sampling.choose_customers(np.random.default_rng(1).permutation(ids), 1200)
    assert len(a) == 1200 and np.array_equal(a, b)
    assert set(sampling.choose_customers(ids, 1000)) <= set(a)  # a larger cap keeps every customer of a smaller one
    assert not np.array_equal(a, np.sort(ids[:1200]))  # a hash, not the first ids
    # the key is a fixed function of the id (not Python's per-process hash)
    assert sampling.customer_keys(["c00001"])[0] == int.from_bytes(
        __import__("hashlib").blake2b(b"c00001", digest_size=8, key=sampling.SALT).digest(), "big")
    assert sampling.choose_customers(ids, 5000) is None and sampling.choose_customers(ids, None) is None


def test_sample_keeps_whole_customers(events):
    out, sample = sampling.sample_events(events, Settings(eval_customers_cap=1000))
    assert sample is not None and out["customer_id"].nunique() == 1000 == len(sample.customers)
    kept = set(sample.customers)
    full = events[events["customer_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(out, full)  # every event of a sampled customer, in the same order
    assert not set(events["customer_id"]) - kept <= set(out["customer_id"])
    assert sample.events_read == len(out) < sample.events_total == len(events)
    assert sample.customers_total == events["customer_id"].nunique()


def test_no_sampling_at_or_below_the_cap(events):
    n = events["customer_id"].nunique()
    for cap in (n, n + 1, None):
        out, sample = sampling.sample_events(events, Settings(eval_customers_cap=cap))
        assert sample is None and out is events


def test_parquet_read_reads_the_sampled_customers_rows_only(parquet, events, monkeypatch):
    settings = Settings(eval_customers_cap=1000)
    converted = []
    real = sampling._pandas
    monkeypatch.setattr(sampling, "_pandas", lambda t: converted.append(t.num_rows) or real(t))
    v, sample = sampling.read_training_events(parquet, TAX, settings)
    expected, _ = sampling.sample_events(read_events(parquet, TAX).events, settings)
    pd.testing.assert_frame_equal(v.events, expected)  # the same as reading all and sampling in memory
    raw_ids = pq.read_table(parquet, columns=["customer_id"]).column("customer_id").to_pandas()
    sampled_rows = int(raw_ids.isin(sample.customers).sum())  # raw rows, exact duplicates included
    assert sum(converted) == sample.events_read == sampled_rows < pq.ParquetFile(parquet).metadata.num_rows
    assert len(expected) <= sampled_rows
    assert len(converted) == pq.ParquetFile(parquet).num_row_groups  # row group by row group
    assert sample.events_total == pq.ParquetFile(parquet).metadata.num_rows
    assert sample.customers_total == events["customer_id"].nunique()


def test_parquet_read_below_the_cap_is_read_events(parquet):
    v, sample = sampling.read_training_events(parquet, TAX, Settings(eval_customers_cap=5000))
    assert sample is None
    pd.testing.assert_frame_equal(v.events, read_events(parquet, TAX).events)


def test_problems_of_sampled_rows_keep_their_row_numbers(tmp_path, events):
    raw = generate_events(2600, seed=5, days=300)
    kept = sampling.choose_customers(raw["customer_id"].unique(), 1000)
    bad = int(np.flatnonzero(raw["customer_id"].isin(kept).to_numpy())[-1])  # a sampled customer's row, last row group
    raw.loc[bad, "event_type"] = "teleport"
    raw.loc[3, "customer_id"] = " "  # a blank id is read too (a problem of the file)
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(raw, preserve_index=False), path, row_group_size=7000)
    with pytest.raises(InputError) as exc:
        sampling.read_training_events(path, TAX, Settings(eval_customers_cap=1000))
    assert [p.row for p in exc.value.problems] == [4] and "row 4," in exc.value.problems[0].message  # the first row group's
    v, sample = sampling.read_training_events(path, TAX, Settings(eval_customers_cap=1000), allow_rejects=True)
    full = read_events(path, TAX, allow_rejects=True)
    assert sorted(v.rejects["row"].astype(int)) == sorted(full.rejects["row"].astype(int)) == [4, bad + 1]
    assert v.n_problems == full.n_problems == 2


@pytest.fixture(scope="module")
def trained(events):
    n = events["customer_id"].nunique()
    run = {cap: train_and_evaluate(events, TAX, build_settings(FAST, {"eval_customers_cap": cap})) for cap in (None, n, 1500)}
    return n, run


def test_below_the_cap_the_run_is_unchanged(trained):
    n, run = trained
    a, b = run[None].report, run[n].report
    assert b["sample"] == {"applied": False, "customers_cap": n, "customers": n}
    for task in TASKS:
        ra, rb = a["tasks"][task], b["tasks"][task]
        assert rb["sampled"] is None
        assert ra.get("model") == rb.get("model") and ra.get("ci95") == rb.get("ci95"), task
    assert a["dataset"] == b["dataset"]


def test_report_carries_the_sample_and_the_full_sizes(trained):
    n, run = trained
    rep = run[1500].report
    s = rep["sample"]
    assert s["applied"] and s["customers"] == 1500 and s["customers_total"] == n and s["events"] < s["events_total"]
    assert rep["dataset"]["customers"] == 1500
    assert any("1,500 of" in m for m in rep["messages"])
    trained_tasks = [t for t in TASKS if "skipped" not in rep["tasks"][t]]
    assert trained_tasks
    for task in trained_tasks:
        r = rep["tasks"][task]
        assert r["rows"]["test"] == r["n_test"] == r["sampled"]["test_rows"]
        assert r["sampled"]["test_rows_full_estimate"] == round(r["n_test"] * n / 1500)
        assert r["sampled"]["validation_rows"] == r["rows"]["validation"] == r["validation_rows"]
        full = run[None].report["tasks"][task]
        assert r["n_test"] < full["n_test"]  # the sample's test slice is smaller than the log's
    # whole customers: every test row is a sampled customer's
    kept = set(run[1500].snapshots.customer_ids)
    assert len(kept) <= 1500 and kept <= set(run[None].snapshots.customer_ids)


def test_parquet_read_of_dictionary_encoded_ids(tmp_path):
    raw = generate_events(1500, seed=6, days=200)
    raw["customer_id"] = raw["customer_id"].astype("category")  # stored dictionary-encoded
    path = tmp_path / "cat.parquet"
    pq.write_table(pa.Table.from_pandas(raw, preserve_index=False), path, row_group_size=5000)
    settings = Settings(eval_customers_cap=1000)
    v, sample = sampling.read_training_events(path, TAX, settings)
    expected, _ = sampling.sample_events(read_events(path, TAX).events, settings)
    assert sample is not None and len(sample.customers) == 1000
    pd.testing.assert_frame_equal(v.events, expected)


def test_a_folder_of_files_with_different_id_types_is_sampled_as_text(tmp_path, events):
    """One file stores customer_id as integers, another as text: the sampled read compares the ids
    as text (it raised ArrowInvalid before) and keeps the same customers as the in-memory sample."""
    ids = {c: i for i, c in enumerate(sorted(events["customer_id"].unique()))}
    numeric = events.assign(customer_id=events["customer_id"].map(ids).astype("int64"))
    half = numeric["customer_id"] % 2 == 0
    folder = tmp_path / "mixed"
    folder.mkdir()
    numeric[half].to_parquet(folder / "a.parquet", index=False)  # int64 ids
    numeric[~half].assign(customer_id=lambda f: "c" + f["customer_id"].astype(str)).to_parquet(folder / "b.parquet", index=False)  # text ids
    settings = Settings(eval_customers_cap=1000)
    result, sample = sampling.read_training_events(folder, TAX, settings)
    whole = read_events(folder, TAX)
    expected, _ = sampling.sample_events(whole.events, settings)
    assert sample is not None and len(sample.customers) == 1000
    pd.testing.assert_frame_equal(result.events.reset_index(drop=True), expected.reset_index(drop=True))
