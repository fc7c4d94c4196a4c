"""The registered model and the Spark engine from Spark's side (local mode; the standalone
cluster is in test_spark_cluster.py): ``mlflow.pyfunc.spark_udf`` over nested customers,
``score_dataframe`` on a DataFrame, a catalog table as input, and ``journey score --engine spark``
writing a folder of Parquet part files. The reference is always batch scoring with the local
engine on the same events and ``as_of``.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers in tests/
from batch_fixtures import batch_events, batch_model, model_env  # noqa: E402,F401

from journey_stage.core import io  # noqa: E402
from journey_stage.core.errors import InputError, JourneyError  # noqa: E402
from journey_stage.serving.batch import score_file  # noqa: E402
from journey_stage.model.scoring import output_columns  # noqa: E402

AS_OF = "2025-10-01T12:00:00Z"  # inside the events' year: some customers are eligible, some have no history yet


def local_scores(predictor, events_path, out: Path, as_of=None, reasons=False) -> pd.DataFrame:
    """The reference: the local engine's output file, as written."""
    score_file(events_path, out, predictor=predictor, as_of=as_of, reasons=reasons)
    return pd.read_parquet(out)


def by_customer(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("customer_id", ignore_index=True)


def assert_rows_equal(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Same columns, same customers, same values (exactly), compared customer by customer."""
    assert list(got.columns) == list(ref.columns)
    got, ref = by_customer(got), by_customer(ref)
    assert got["customer_id"].tolist() == ref["customer_id"].tolist()
    for c in ref.columns:
        if pd.api.types.is_float_dtype(ref[c]):
            np.testing.assert_array_equal(got[c].to_numpy(float), ref[c].to_numpy(float), err_msg=c)
        else:
            left = got[c].astype(object).where(got[c].notna(), None).tolist()
            right = ref[c].astype(object).where(ref[c].notna(), None).tolist()
            assert left == right, c


@pytest.fixture(scope="module")
def raw_events(batch_events) -> pd.DataFrame:
    return batch_events.drop(columns=["true_stage"])


@pytest.fixture(scope="module")
def events_parquet(tmp_path_factory, raw_events) -> Path:
    path = tmp_path_factory.mktemp("spark-api-in") / "events.parquet"
    io.write_table(raw_events, path, taxonomy="five_stage")
    return path


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    pytest.importorskip("pyspark")
    from journey_stage.serving.spark import get_session

    # the catalog (temp views) keeps its folder in a temporary one, not ./spark-warehouse
    session, _ = get_session("local[2]", {"spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse"))})
    yield session
    session.stop()


# ---- the pyfunc's nested shape takes what Spark hands over (no Spark needed) -------------------

def test_nested_events_in_every_shape_spark_hands_over(batch_model, raw_events):
    """numpy arrays of dicts with naive pandas Timestamps (what spark_udf passes), datetimes with
    and without a time zone, Spark Rows, ISO text and plain lists of dicts: the same scores."""
    Row = pytest.importorskip("pyspark.sql").Row

    from journey_stage.model.pyfunc import JourneyModel

    model = JourneyModel()
    model.predictor = batch_model.predictor
    ids = sorted(raw_events["customer_id"].unique())[:40]
    groups = [(cid, g.drop(columns="customer_id").to_dict("records")) for cid, g in raw_events.groupby("customer_id") if cid in ids]

    def naive_ts(e):
        return e | {"timestamp": e["timestamp"].tz_convert("UTC").tz_localize(None)}

    shapes = {
        "list of dicts": lambda evs: evs,
        "numpy array, naive Timestamps": lambda evs: np.array([naive_ts(e) for e in evs], dtype=object),
        "naive datetimes": lambda evs: [e | {"timestamp": naive_ts(e)["timestamp"].to_pydatetime()} for e in evs],
        "aware datetimes": lambda evs: np.array([e | {"timestamp": e["timestamp"].to_pydatetime().astimezone(dt.timezone.utc)} for e in evs]),
        "Spark Rows": lambda evs: [Row(**naive_ts(e)) for e in evs],
        "ISO text": lambda evs: [e | {"timestamp": e["timestamp"].isoformat()} for e in evs],
    }
    answers = {}
    for name, shape in shapes.items():
        customers = pd.DataFrame({"customer_id": [cid for cid, _ in groups] + ["nobody"],
                                  "events": [shape(evs) for _, evs in groups] + [np.array([], dtype=object)]})
        answers[name] = model.predict(None, customers, params={"as_of": AS_OF})
    ref = answers.pop("list of dicts")
    assert ref["customer_id"].tolist() == ids + ["nobody"]  # one row per input row, in input order
    assert 0 < ref["eligible"].sum() < len(ids) and not ref["eligible"].iloc[-1]
    for name, got in answers.items():
        pd.testing.assert_frame_equal(got, ref, check_exact=True, obj=name)


# ---- mlflow.pyfunc.spark_udf ---------------------------------------------------------------------

def udf_result_type(predictor):
    """The output columns as a Spark struct: eligible boolean, probabilities double, the rest text."""
    from pyspark.sql import types as T

    from journey_stage.serving.writing import output_schema

    spark_type = {"bool": T.BooleanType(), "double": T.DoubleType(), "string": T.StringType()}
    return T.StructType([T.StructField(f.name, spark_type[str(f.type)]) for f in output_schema(predictor, False)])


def nested_customers(events_df):
    from pyspark.sql import functions as F

    return events_df.groupBy("customer_id").agg(
        F.collect_list(F.struct("timestamp", "event_type", "channel", "value", "campaign")).alias("events"))


def spark_udf_scores(spark, model_uri: str, events_df, as_of: str) -> pd.DataFrame:
    """The registered model applied by mlflow.pyfunc.spark_udf to one row per customer."""
    import mlflow
    from pyspark.sql import functions as F

    from journey_stage.model.registry import configure, load_predictor

    configure(create=False)  # MLflow at the JOURNEY_HOME store
    predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=udf_result_type(load_predictor(model_uri)), params={"as_of": as_of})
    customers = nested_customers(events_df)
    return customers.select(predict(F.struct("customer_id", "events")).alias("s")).select("s.*").toPandas()


@pytest.mark.slow
def test_spark_udf_over_nested_customers_equals_batch_scoring(spark, model_env, raw_events, events_parquet, tmp_path):
    scored = spark_udf_scores(spark, model_env.uri, spark.createDataFrame(raw_events), AS_OF)
    assert list(scored.columns) == output_columns(model_env.predictor)
    assert sorted(scored["customer_id"]) == sorted(raw_events["customer_id"].unique())  # one row per customer
    ref = local_scores(model_env.predictor, events_parquet, tmp_path / "local.parquet", as_of=AS_OF)
    assert 50 < len(ref) < len(scored)
    eligible = scored[scored["eligible"].astype(bool)].reset_index(drop=True)
    assert_rows_equal(eligible, ref)


# ---- score_dataframe -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("as_of,reasons", [(None, False), (AS_OF, True)])
def test_score_dataframe_equals_the_local_engine(spark, model_env, raw_events, events_parquet, tmp_path, as_of, reasons):
    from journey_stage.serving.spark import score_dataframe

    scores = score_dataframe(spark.createDataFrame(raw_events), model_env.uri, as_of=as_of, reasons=reasons)
    got = scores.toPandas()
    ref = local_scores(model_env.predictor, events_parquet, tmp_path / "local.parquet", as_of=as_of, reasons=reasons)
    assert len(ref) > 50
    assert_rows_equal(got, ref)


def bad_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """Text events with three invalid rows (empty id, a date that is not one, an unknown type)."""
    text = raw.iloc[:3000].assign(timestamp=raw["timestamp"].iloc[:3000].astype(str)).reset_index(drop=True)
    text.loc[10, "customer_id"] = ""
    text.loc[1500, "timestamp"] = "yesterday"
    text.loc[2999, "event_type"] = "telepathy"
    return text


@pytest.mark.slow
def test_score_dataframe_rejects(spark, batch_model, raw_events, tmp_path):
    from journey_stage.serving.spark import score_dataframe

    text = bad_rows(raw_events)
    frame = spark.createDataFrame(text).repartition(1)  # one partition: its row numbers are the frame's
    with pytest.raises(InputError, match=r"DataFrame, Spark partition 0: 3 problem\(s\)") as exc:
        score_dataframe(frame, predictor=batch_model.predictor)
    assert "row 1501, column 'timestamp'" in exc.value.message
    rejects = tmp_path / "rejects.parquet"
    got = score_dataframe(frame, predictor=batch_model.predictor, rejects=rejects).toPandas()
    rej = pd.read_parquet(rejects)
    assert rej["row"].tolist() == [11, 1501, 3000] and set(rej["source"]) == {"DataFrame, Spark partition 0"}
    assert rej["event_type"].tolist() == text["event_type"].iloc[[10, 1500, 2999]].tolist()
    path = tmp_path / "events.csv"  # the same rows as a file: the same scores and the same reasons
    text.to_csv(path, index=False)
    local_rejects = tmp_path / "local-rejects.parquet"
    score_file(path, tmp_path / "local.parquet", predictor=batch_model.predictor, rejects=local_rejects)
    ref = pd.read_parquet(tmp_path / "local.parquet")
    assert_rows_equal(got, ref)
    assert rej["reject_reason"].tolist() == [
        r.replace(str(path), "DataFrame, Spark partition 0") for r in pd.read_parquet(local_rejects)["reject_reason"]]
    with pytest.raises(JourneyError, match="missing required column"):
        score_dataframe(frame.drop("timestamp"), predictor=batch_model.predictor)


# ---- journey score --engine spark: a folder of part files; tables as input ------------------------

def run_cli(*args: str):
    from typer.testing import CliRunner

    from journey_stage.cli import app

    return CliRunner().invoke(app, ["score", *args])


@pytest.mark.slow
def test_cli_spark_writes_a_folder_of_part_files_like_the_local_file(spark, model_env, events_parquet, bad_csv_folder, tmp_path):
    local, folder, rej = tmp_path / "local.parquet", tmp_path / "out" / "scores.parquet", tmp_path / "rejects.parquet"
    common = ["--model", model_env.uri, "--spark-master", "local[2]"]
    res_local = run_cli("--events", str(bad_csv_folder), "--out", str(local), "--rejects", str(tmp_path / "local-rej.parquet"), *common)
    assert res_local.exit_code == 0, res_local.output
    folder.parent.mkdir()
    folder.write_text("a previous single-file output")  # replaced by the folder
    res = run_cli("--events", str(bad_csv_folder), "--out", str(folder), "--engine", "spark", "--rejects", str(rej), *common)
    assert res.exit_code == 0, res.output
    assert "(folder of Parquet part files)" in res.stdout
    assert res.stdout.split("->")[0] == res_local.stdout.split("->")[0]  # the same counts
    parts = sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "_")))
    assert parts and all(p.startswith("part-") and p.endswith(".parquet") for p in parts)
    pd.testing.assert_frame_equal(pd.read_parquet(folder), pd.read_parquet(local))  # same rows, same order, same types
    pd.testing.assert_frame_equal(pd.read_parquet(rej), pd.read_parquet(tmp_path / "local-rej.parquet"))
    assert sorted(p.name for p in folder.parent.iterdir()) == ["scores.parquet"]  # no temporary folder left
    # again over the previous folder, and one file when asked; CSV is one file (the local engine's text)
    again = run_cli("--events", str(events_parquet), "--out", str(folder), "--engine", "spark", *common)
    assert again.exit_code == 0, again.output
    single = run_cli("--events", str(events_parquet), "--out", str(tmp_path / "one.parquet"), "--engine", "spark", "--single-file", *common)
    csv = run_cli("--events", str(events_parquet), "--out", str(tmp_path / "s.csv"), "--engine", "spark", *common)
    csv_local = run_cli("--events", str(events_parquet), "--out", str(tmp_path / "l.csv"), *common)
    assert single.exit_code == csv.exit_code == csv_local.exit_code == 0, single.output + csv.output
    assert "part files" not in single.stdout + csv.stdout
    ref = local_scores(model_env.predictor, events_parquet, tmp_path / "ref.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(folder), ref)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), ref)
    assert (tmp_path / "s.csv").read_text() == (tmp_path / "l.csv").read_text()


@pytest.fixture(scope="module")
def bad_csv_folder(tmp_path_factory, raw_events) -> Path:
    folder = tmp_path_factory.mktemp("spark-api-bad") / "in"
    folder.mkdir()
    bad_rows(raw_events).to_csv(folder / "a.csv", index=False)
    io.write_table(raw_events.iloc[3000:], folder / "b.parquet")
    return folder


@pytest.mark.slow
def test_cli_spark_folder_refusals_are_one_line(spark, model_env, events_parquet, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not a Spark output")
    res = run_cli("--events", str(events_parquet), "--out", str(mine), "--engine", "spark", "--model", model_env.uri)
    assert res.exit_code == 2 and "holds more than Parquet part files" in res.stderr, res.output
    assert (mine / "notes.txt").read_text() == "not a Spark output"
    res = run_cli("--events", str(events_parquet), "--out", str(mine / "notes.txt"), "--engine", "spark")
    assert res.exit_code == 2 and "a file that is not a Parquet output is in the way" in res.stderr, res.output
    out = tmp_path / "scores"
    res = run_cli("--events", str(events_parquet), "--out", str(out), "--engine", "spark", "--rejects", str(out / "r.parquet"))
    assert res.exit_code == 2 and "is inside the --out folder" in res.stderr, res.output
    res = run_cli("--events", str(events_parquet), "--out", "s3a://bucket/scores.parquet", "--engine", "spark", "--single-file")
    assert res.exit_code == 2 and "not to a URI" in res.stderr, res.output
    assert "Traceback" not in res.output and not out.exists()


@pytest.mark.slow
def test_spark_reads_a_catalog_table(spark, batch_model, raw_events, events_parquet, tmp_path):
    spark.createDataFrame(raw_events).createOrReplaceTempView("journey_events")
    counts = score_file("journey_events", tmp_path / "t.parquet", predictor=batch_model.predictor, engine="spark", folder=True)
    ref = local_scores(batch_model.predictor, events_parquet, tmp_path / "local.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), ref)
    assert counts["scored"] == len(ref) and counts["rejected"] == 0
    for missing in ("no_such_events", str(tmp_path / "nope.parquet")):  # a name, a path
        with pytest.raises(JourneyError, match=f"{missing}: no file, folder or table of that name"):
            score_file(missing, tmp_path / "x.parquet", predictor=batch_model.predictor, engine="spark")
    assert not (tmp_path / "x.parquet").exists()
