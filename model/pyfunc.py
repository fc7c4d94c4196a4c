"""The MLflow pyfunc face of a predictor: input = canonical events (one row per touchpoint),
params: ``as_of``; output = one row per eligible customer with the columns of
:func:`journey_stage.model.scoring.output_columns`."""

from __future__ import annotations

import joblib
import mlflow
import pandas as pd

from journey_stage.model.predictor import JourneyPredictor


class JourneyModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: input = canonical events (one row per touchpoint), params: as_of;
    output = one row per eligible customer with the columns of ``journey_stage.model.scoring.output_columns``."""

    def load_context(self, context):
        self.predictor: JourneyPredictor = joblib.load(context.artifacts["predictor"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        from journey_stage.core.events import canonical_events
        from journey_stage.model.scoring import score_events

        as_of = (params or {}).get("as_of") or None
        events = canonical_events(model_input, "model input", self.predictor.taxonomy).events
        return score_events(self.predictor, events, as_of)
