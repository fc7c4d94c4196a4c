"""The registered model outside this checkout (issue 15): code and pinned requirements travel
with it, no absolute path in MLmodel, a relaxed signature (datetime or text timestamps, optional
columns), flat events or nested customers, and it knows its registered name and version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.model import registry
from journey_stage.model.scoring import score_events

AS_OF = "2025-11-30T00:00:00Z"


@pytest.fixture(scope="module")
def model_dir(logged_model, tmp_path_factory) -> Path:
    home, uri, _ = logged_model
    registry.configure(RuntimeSettings(home=home))
    return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path_factory.mktemp("model-copy"))))


@pytest.fixture(scope="module")
def loaded(model_dir):
    return mlflow.pyfunc.load_model(str(model_dir))


def expected(logged_model, events: pd.DataFrame, as_of=AS_OF) -> pd.DataFrame:
    home, uri, _ = logged_model
    predictor = registry.load_predictor(uri, RuntimeSettings(home=home))
    return score_events(predictor, events, as_of)


def test_the_model_folder_is_self_contained(model_dir):
    mlmodel = (model_dir / "MLmodel").read_text()
    assert "model_code_path: pyfunc_model.py" in mlmodel
    assert "/work/" not in mlmodel and "/tmp/" not in mlmodel
    code = model_dir / "code" / "journey_stage"
    assert sorted(p.name for p in code.iterdir() if p.is_dir() and p.name != "__pycache__") == ["core", "features", "model"]
    reqs = [r for r in (model_dir / "requirements.txt").read_text().split() if r]
    assert all("==" in r for r in reqs), reqs
    assert json.loads((model_dir / "registry.json").read_text()) == {"name": "registry-test", "version": "1"}


def test_datetime_timestamps_and_missing_optional_columns(loaded, logged_model):
    _, _, events = logged_model
    want = expected(logged_model, events)
    got = loaded.predict(events, params={"as_of": AS_OF})  # timestamps datetime64[us, UTC]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
    bare = events[["customer_id", "timestamp", "event_type"]]
    got_bare = loaded.predict(bare, params={"as_of": AS_OF})
    # without channel, value and campaign some events become exact duplicates: canonical events drop them
    want_bare = expected(logged_model, canonical_events(bare, "bare", load_taxonomy("five_stage")).events)
    pd.testing.assert_frame_equal(got_bare.reset_index(drop=True), want_bare.reset_index(drop=True), check_dtype=False)
    assert set(got["model_name"]) == {"registry-test"} and set(got["model_version"]) == {"1"}


def test_nested_customers_one_row_per_input_row_in_order(loaded, logged_model):
    _, _, events = logged_model
    flat = expected(logged_model, events).set_index("customer_id")
    ids = list(flat.index[:5])[::-1] + ["nobody"]
    records = events.assign(timestamp=events["timestamp"].astype(str))
    nested = pd.DataFrame({
        "customer_id": ids,
        "events": [records[records["customer_id"] == c].drop(columns="customer_id").to_dict("records") for c in ids],
    })
    got = loaded.predict(nested, params={"as_of": AS_OF})
    assert list(got["customer_id"]) == ids
    assert not got.iloc[-1]["eligible"] and pd.isna(got.iloc[-1]["stage"])
    for _, row in got.iloc[:-1].iterrows():
        want = flat.loc[row["customer_id"]]
        assert row["stage"] == want["stage"]
        assert row["churn_probability"] == pytest.approx(want["churn_probability"], nan_ok=True)


def test_mlflow_models_predict_cli_on_the_products_events(model_dir, logged_model, tmp_path):
    _, _, events = logged_model
    inp = tmp_path / "events.json"
    small = events[events["customer_id"].isin(events["customer_id"].unique()[:20])]
    frame = small.assign(timestamp=small["timestamp"].astype(str))[["customer_id", "timestamp", "event_type"]]
    inp.write_text(json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False)), "params": {"as_of": AS_OF}}))
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "predict", "-m", str(model_dir), "-i", str(inp),
                           "-o", str(out), "--env-manager", "local", "--content-type", "json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = pd.DataFrame(json.loads(out.read_text())["predictions"])
    assert len(got) > 0 and set(got["model_version"]) == {"1"}


@pytest.mark.slow
def test_a_fresh_environment_from_the_models_own_requirements(model_dir, logged_model, tmp_path):
    """Only what mlflow.pyfunc.get_model_dependencies returns, in a new virtual environment; the
    model folder copied elsewhere; its answers equal the product's own scoring."""
    _, _, events = logged_model
    reqs = mlflow.pyfunc.get_model_dependencies(str(model_dir))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    pip = subprocess.run([py, "-m", "pip", "install", "-q", "-r", reqs], capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(model_dir, copy)
    events.to_parquet(tmp_path / "events.parquet")
    script = (f"import mlflow, pandas as pd\nm = mlflow.pyfunc.load_model({str(copy)!r})\n"
              f"out = m.predict(pd.read_parquet({str(tmp_path / 'events.parquet')!r}), params={{'as_of': {AS_OF!r}}})\n"
              f"out.to_parquet({str(tmp_path / 'out.parquet')!r})\n"
              "import journey_stage; print(journey_stage.__file__)\n")
    proc = subprocess.run([py, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(copy) in proc.stdout  # the model's own code, not an installed product
    got = pd.read_parquet(tmp_path / "out.parquet")
    want = expected(logged_model, events)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


def test_the_pickled_predictor_needs_only_the_inference_layers(logged_model):
    """What travels in code/ (core, features, model) is all a loaded predictor imports: no class
    of training, serving or the CLI is pickled into it (a fresh environment would lack them)."""
    import pickle
    import pickletools

    home, uri, _ = logged_model
    predictor = registry.load_predictor(uri, RuntimeSettings(home=home))
    modules, strings = set(), []
    for op, arg, _ in pickletools.genops(pickle.dumps(predictor, protocol=4)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            modules.add(strings[-2])
        elif op.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
    ours = {m for m in modules if m.startswith("journey_stage")}
    assert "journey_stage.model.task_model" in ours and any(m.linear is not None for m in predictor.models.values())
    assert ours and all(m.split(".")[1] in ("core", "features", "model") for m in ours), sorted(ours)
