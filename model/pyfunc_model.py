"""The journey pyfunc model for MLflow's "models from code" (no cloudpickled Python object).

`journey train` logs this file as the model's code (``python_model=<path of this file>``); MLflow
copies it into every logged model and runs it when the model is loaded. The file only names the
model class, whose code lives in the installed package (:class:`journey_stage.model.pyfunc.JourneyModel`);
the trained predictor itself is the model's ``predictor`` artifact (joblib).
"""

import mlflow

from journey_stage.model.pyfunc import JourneyModel

mlflow.models.set_model(JourneyModel())
