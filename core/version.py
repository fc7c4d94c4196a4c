"""The product's version (the installed distribution's), recorded in every model it writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("journey-stage")
except PackageNotFoundError:  # pragma: no cover - a source tree without install
    __version__ = "0+unknown"
