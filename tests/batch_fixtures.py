"""Fixtures for the batch / Spark scoring tests: one small trained and promoted model per session.

Import the fixtures from a test module (``from batch_fixtures import batch_model, ...``); the
model is trained once per session in its own MLflow store (``JOURNEY_HOME`` in a tmp folder),
following the sequence of ``journey_stage.cli.run_training`` + ``journey promote``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

MODEL_NAME = "journey-stage"


@dataclass
class BatchModel:
    home: Path  # JOURNEY_HOME of the embedded MLflow store
    uri: str  # models:/journey-stage@champion
    predictor: object  # the loaded JourneyPredictor
    events: pd.DataFrame  # canonical events the model was trained on (800 customers, seed 3)


def train_small_model(home: Path) -> BatchModel:
    """generate -> canonical -> train_and_evaluate -> report -> log -> promote -> load."""
    from journey_stage.core.events import canonical_events
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.training import tracking
    from journey_stage.model import registry
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report

    os.environ["JOURNEY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    tax = load_taxonomy("five_stage")
    raw = generate_events(800, seed=3)
    events = canonical_events(raw, "generated", tax).events
    # One simulated year is too short for a purged 90-day churn split (training label windows
    # ending before the validation cutoffs leave no churners); these tests need every task.
    settings = Settings(n_estimators=30, bootstrap_rounds=0, max_train_rows=20000, purge_validation=False)
    outcome = train_and_evaluate(events, tax, settings)
    report_dir = home / "report"
    plots = write_report(outcome, report_dir)
    tracking.log_training_run(outcome, events, settings, report_dir, plots, MODEL_NAME)
    tracking.promote(MODEL_NAME)
    uri = f"models:/{MODEL_NAME}@champion"
    return BatchModel(home, uri, registry.load_predictor(uri), events)


@pytest.fixture(scope="session")
def batch_model(tmp_path_factory) -> BatchModel:
    home = tmp_path_factory.mktemp("batch-journey-home")
    old = {k: os.environ.get(k) for k in ("JOURNEY_HOME", "MLFLOW_TRACKING_URI")}
    try:
        return train_small_model(home)
    finally:  # other test modules keep their own MLflow set-up; use `model_env` to load by URI
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def batch_events(batch_model) -> pd.DataFrame:
    """Raw events to score (different customers from training), as generated (with true_stage)."""
    from journey_stage.synthetic.generate import generate_events

    return generate_events(600, seed=21)


@pytest.fixture()
def model_env(batch_model, monkeypatch):
    """JOURNEY_HOME of the session model, for code that loads it by URI (CLI, score_file)."""
    monkeypatch.setenv("JOURNEY_HOME", str(batch_model.home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return batch_model
