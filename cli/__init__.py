"""Customer journey stage prediction: point-in-time features, LightGBM models, MLflow registry,
BentoML service, batch and Spark scoring. Layers and who may import whom: docs/architecture.md."""

from journey_stage.core.version import __version__

__all__ = ["__version__"]
