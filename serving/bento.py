"""A Bento that carries its model (``journey bento``): the registered model is imported into the
BentoML model store as ``journey-stage:<version>``, and the Bento's service serves that embedded
model (``JOURNEY_BENTO_MODEL``) with no registry access. Two Bentos of one tag serve the same model:
the tag names the model version (``journey_service:model-<name>-v<version>``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from journey_stage.core.runtime import ENV_NAMES, RuntimeSettings
from journey_stage.model import pyfunc, registry

SERVICE = "journey_stage.serving.service:JourneyService"


def bento_model_tag(name: str, version: str) -> str:
    return f"{name}:v{version}"


def import_model(uri: str, runtime: RuntimeSettings) -> tuple[str, str, str]:
    """Resolve ``uri`` to one registered version and copy that MLflow model folder into the
    BentoML model store; ``(bento model tag, registered name, version)``. Re-importing the same
    version reuses the stored copy."""
    import bentoml
    import mlflow

    pinned, _ = registry.pin(uri, runtime)
    name, _, version = pinned[len("models:/"):].partition("/")
    tag = bento_model_tag(name, version)
    try:
        bentoml.models.get(tag)
        return tag, name, version
    except bentoml.exceptions.NotFound:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(pinned, dst_path=tmp))
        registry.load_predictor(str(local), runtime)  # refuses a broken or foreign model before it is packed
        meta = {"registered_model": name, "version": version, "source": pinned}
        with bentoml.models.create(tag, labels={"registered-model": name, "model-version": version}, metadata=meta) as stored:
            shutil.copytree(local, stored.path, dirs_exist_ok=True)
    return tag, name, version


def build_bento(uri: str, runtime: RuntimeSettings) -> str:
    """Build the Bento for the model ``uri`` names; its tag."""
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema

    tag, name, version = import_model(uri, runtime)
    os.environ[ENV_NAMES["bento_model"]] = tag  # the service class, imported by the build, declares the model
    bento = bentoml.bentos.build(
        SERVICE,
        name="journey_service",
        version=f"model-{name}-v{version}",
        labels={"registered-model": name, "model-version": version},
        description="Customer journey stage prediction with its model embedded (no registry access needed).",
        include=["docs/http_api.md"],
        envs=[BentoEnvSchema(name=ENV_NAMES["bento_model"], value=tag), BentoEnvSchema(name="BENTOML_DO_NOT_TRACK", value="true")],
        args={"bento_model": tag},  # kept in the Bento: `bentoml serve <tag>` hands it back to the service
        python={"packages": pyfunc.pinned_requirements() + ["mlflow", "bentoml", "fastapi"], "lock_packages": False},
        models=[tag],
    )
    return str(bento.tag)
