"""Fixtures of the model tests: a small model trained and logged the way `journey train` logs it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def logged_model(tmp_path_factory):
    """A small model trained and logged the way `journey train` logs it, in its own store."""
    from journey_stage.core.events import canonical_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.training import tracking
    from journey_stage.training.pipeline import train_and_evaluate

    home = tmp_path_factory.mktemp("registry-home")
    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(300, seed=5), "generated", tax).events
    # booster weight 0.5: every binary task is a blend, so its calibrator pickles the blended estimator too
    outcome = train_and_evaluate(events, tax, Settings(n_estimators=10, bootstrap_rounds=0, purge_validation=False, booster_weights=[0.5]))
    report = home / "report"
    report.mkdir()
    with pytest.MonkeyPatch.context() as mp:  # the store of this fixture only while logging
        mp.setenv("JOURNEY_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        logged = tracking.log_training_run(outcome, events, outcome.predictor.settings, report, {}, "registry-test")
    return home, logged["model_uri"], events
