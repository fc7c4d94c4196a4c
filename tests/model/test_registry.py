"""Loading models: a model written by journey-stage 0.1 (the layout before the journey_stage
namespace: modules ``training.*``) gives one line saying it must be retrained and which version
wrote it, not a traceback."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import joblib
import mlflow
import pytest

from journey_stage.core.errors import ModelError
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.model import pyfunc, registry

# the code file every 0.1 model carries (training/pyfunc_model.py of 0.1.0)
OLD_CODE_FILE = '''import mlflow

from training.tracking import JourneyModel

mlflow.models.set_model(JourneyModel())
'''


class _OldPredictor:  # pickled under the 0.1 module name below
    pass


def _save_model(path: Path, predictor_file: Path) -> None:
    code = Path(pyfunc.__file__).with_name("pyfunc_model.py")
    mlflow.pyfunc.save_model(str(path), python_model=str(code), artifacts={"predictor": str(predictor_file)})


@pytest.fixture()
def runtime(tmp_path) -> RuntimeSettings:
    return RuntimeSettings(home=tmp_path / "home")


def test_a_model_with_the_old_code_file_names_its_version(tmp_path, runtime):
    pred = tmp_path / "predictor.joblib"
    joblib.dump({"anything": 1}, pred)
    model = tmp_path / "old-model"
    _save_model(model, pred)
    (model / "pyfunc_model.py").write_text(OLD_CODE_FILE)
    with pytest.raises(ModelError) as err:
        registry.load_predictor(str(model), runtime)
    text = str(err.value)
    assert "written by journey-stage 0.1" in text and "retrain" in text
    assert "\n" not in text


def test_a_model_whose_pickle_names_the_old_modules_names_its_version(tmp_path, runtime, monkeypatch):
    old = types.ModuleType("training.predictor")
    _OldPredictor.__module__, _OldPredictor.__qualname__ = "training.predictor", "JourneyPredictor"
    old.JourneyPredictor = _OldPredictor
    monkeypatch.setitem(sys.modules, "training", types.ModuleType("training"))
    monkeypatch.setitem(sys.modules, "training.predictor", old)
    pred = tmp_path / "predictor.joblib"
    joblib.dump(_OldPredictor(), pred)
    monkeypatch.delitem(sys.modules, "training.predictor")
    monkeypatch.delitem(sys.modules, "training")
    model = tmp_path / "old-pickle"
    _save_model(model, pred)
    with pytest.raises(ModelError) as err:
        registry.load_predictor(str(model), runtime)
    assert "written by journey-stage 0.1" in str(err.value)


def test_other_load_failures_keep_their_own_message(tmp_path, runtime):
    with pytest.raises(ModelError) as err:
        registry.load_predictor(str(tmp_path / "no-such-model"), runtime)
    assert "written by" not in str(err.value) and "cannot load model" in str(err.value)


def test_requirements_are_pinned_and_the_digest_recorded(logged_model):
    home, uri, _ = logged_model
    runtime = RuntimeSettings(home=home)
    registry.configure(runtime)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    reqs = [r for r in (local / "requirements.txt").read_text().split() if r and not r.startswith("mlflow")]
    assert reqs and all("==" in r for r in reqs), reqs
    assert "predictor_sha256" in (local / "MLmodel").read_text()
    assert registry.load_predictor(uri, runtime).info["journey_stage_version"]


def test_a_changed_artifact_is_refused_with_one_line(logged_model, tmp_path):
    import shutil

    home, uri, _ = logged_model
    runtime = RuntimeSettings(home=home)
    registry.configure(runtime)
    copy = tmp_path / "model"
    shutil.copytree(mlflow.artifacts.download_artifacts(uri), copy)
    artifact = next(copy.rglob("predictor.joblib"))
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(ModelError) as err:
        registry.load_predictor(str(copy), runtime)
    assert "does not match the digest" in str(err.value) and "\n" not in str(err.value)


def test_an_artifact_that_is_not_a_predictor_is_refused(tmp_path, runtime):
    pred = tmp_path / "predictor.joblib"
    joblib.dump({"not": "a predictor"}, pred)
    model = tmp_path / "model"
    _save_model(model, pred)
    with pytest.raises(ModelError) as err:
        registry.load_predictor(str(model), runtime)
    assert "not a journey predictor" in str(err.value)
