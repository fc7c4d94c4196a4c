"""Customer journey stage prediction: point-in-time features, LightGBM models, MLflow registry,
BentoML service, batch and Spark scoring. Layers and who may import whom: docs/architecture.md."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("journey-stage")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
