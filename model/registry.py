"""Where models live: MLflow's tracking store and registry (embedded SQLite under ``JOURNEY_HOME``
by default, ``MLFLOW_TRACKING_URI`` for a real server), and loading a registered model as a
:class:`~journey_stage.model.predictor.JourneyPredictor`. Used by training, batch, Spark and
the HTTP service alike."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request

import mlflow
from mlflow.tracking import MlflowClient

from journey_stage.core.version import __version__
from journey_stage.core.errors import ModelError
from journey_stage.core.runtime import DEFAULT_MODEL_URI, RuntimeSettings, redact
from journey_stage.model.predictor import JourneyPredictor

EXPERIMENT = "journey-stage"


def configure(runtime: RuntimeSettings | None = None, *, create: bool = True) -> str:
    """Point MLflow at the server in ``runtime.tracking_uri`` (MLFLOW_TRACKING_URI) or at the
    embedded SQLite store in ``runtime.home`` (JOURNEY_HOME); default: the environment, read now.

    ``create=False`` (commands that read a store: score, serve, promote, evaluate): a home without
    a store is an error, not a new empty store. A tracking server that does not answer is one
    error within seconds (MLflow itself retries for minutes)."""
    runtime = runtime or RuntimeSettings.from_env()
    uri = runtime.tracking_uri
    if uri and uri.startswith(("http://", "https://")):
        check_reachable(uri)
    if not uri:
        home = runtime.home_path
        if not create and not (home / "mlflow.db").exists():
            raise ModelError(
                f"JOURNEY_HOME={runtime.home} holds no MLflow store ({home / 'mlflow.db'} does not exist).",
                "point JOURNEY_HOME at the folder `journey train` or `journey demo` used (e.g. journey-demo/mlflow), or set MLFLOW_TRACKING_URI.",
            )
        home.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(home / "artifacts").as_uri())
    else:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(runtime.registry_uri or uri)  # never a stale embedded registry
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            mlflow.create_experiment(EXPERIMENT)
    mlflow.set_experiment(EXPERIMENT)
    return uri


# Modules of the layout before the journey_stage namespace (journey-stage 0.1): a model written by
# it names them in its code file and its pickled predictor.
OLD_LAYOUT_MODULES = ("training", "features", "serving", "journey")
OLD_LAYOUT_IMPORT = re.compile(r"(No module named|cannot import name '\w+' from) '(%s)[.']" % "|".join(OLD_LAYOUT_MODULES))
RETRAIN_HINT = "retrain it with this version: `journey train --events ...` (or `journey demo`)."


def load_predictor(uri: str = DEFAULT_MODEL_URI, runtime: RuntimeSettings | None = None) -> JourneyPredictor:
    """A registered model (``models:/name@alias``, ``models:/name/version``, ``runs:/...``) or a
    model folder (no registry needed: an embedded or copied model) as a predictor."""
    in_registry = uri.startswith(("models:/", "runs:/"))
    if in_registry or "://" in uri:
        configure(runtime, create=not in_registry)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds
        old = written_by_old_layout(exc)
        if old:
            raise ModelError(f"model {uri!r} was written by journey-stage {old} and cannot be loaded by {__version__}.", RETRAIN_HINT) from None
        first = str(exc).splitlines()[0][:200]
        raise ModelError(f"cannot load model {uri!r}: {first}", "train one with `journey train` (or `journey demo`), or pass --model URI.") from None
    predictor: JourneyPredictor = model.unwrap_python_model().predictor
    predictor.check_compatible()
    if uri.startswith("models:/"):
        name, version, alias = _resolve(uri)
        predictor.info.update({"name": name, "version": version, "alias": alias})
    elif not predictor.info.get("name"):  # a folder without registry.json, or a run
        predictor.info.update({"name": uri, "version": ""})
    predictor.info["uri"] = uri
    return predictor


def _resolve(uri: str) -> tuple[str, str, str | None]:
    if not uri.startswith("models:/"):
        return uri, "", None
    rest = uri[len("models:/"):]
    client = MlflowClient()
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version), alias
    name, _, version = rest.partition("/")
    return name, version, None


def written_by_old_layout(exc: BaseException) -> str | None:
    """The product version that wrote a model which failed to load because it names a module of the
    layout before the journey_stage namespace (``No module named 'training'``), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if OLD_LAYOUT_IMPORT.search(text):
            return "0.1.x (modules training.*, features.*, serving.*: before the journey_stage namespace)"
        exc = exc.__cause__ or exc.__context__
    return None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """One quick request to the tracking server's health endpoint; a :class:`ModelError` naming
    the (redacted) URI when nothing answers."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    health = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        urllib.request.urlopen(health, timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # something answers (a proxy may guard /health): MLflow's own calls will tell more
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"MLflow tracking server {redact(uri)} is not reachable ({redact(str(reason))}).",
            "start the server, fix MLFLOW_TRACKING_URI, or unset it to use the embedded store in JOURNEY_HOME.",
        ) from None


def pin(uri: str, runtime: RuntimeSettings | None = None) -> tuple[str, str | None]:
    """``(models:/name/version, alias)`` for a registry URI, resolved once, so that every process
    that loads it serves the same version (an alias may move meanwhile); other URIs unchanged.
    A name, alias or version the registry does not know is one :class:`ModelError`."""
    configure(runtime, create=False)
    if not uri.startswith("models:/"):
        return uri, None
    try:
        name, version, alias = _resolve(uri)
        MlflowClient().get_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"model {uri!r} is not in the registry: {redact(first)}",
                         "list registered models with `mlflow ui`, train one with `journey train`, or pass --model URI.") from None
    return f"models:/{name}/{version}", alias
