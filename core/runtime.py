"""Runtime settings: where the product runs (model URI, home, registry, limits, workers, token,
Spark options), read from the environment once, when a command or the service starts.

Nothing reads the environment at import time. The CLI builds one :class:`RuntimeSettings` per
command (:meth:`RuntimeSettings.from_env`), the HTTP service one per worker start; library
functions take one as an argument and, when given none, read the environment at call time.
The *training* settings (horizons, trees, bootstrap) are the other settings object:
:class:`journey_stage.core.settings.Settings`.

=============================  ===================================  =============================
variable                       field                                default
=============================  ===================================  =============================
JOURNEY_MODEL_URI              ``model_uri``                        ``models:/journey-stage@champion``
JOURNEY_MODEL_ALIAS            ``model_alias``                      set by ``journey serve``
JOURNEY_BENTO_MODEL            ``bento_model``                      set in a Bento by ``journey bento``
JOURNEY_HOME                   ``home``                             ``./.journey``
MLFLOW_TRACKING_URI            ``tracking_uri``                     (embedded SQLite in home)
MLFLOW_REGISTRY_URI            ``registry_uri``                     the tracking URI
JOURNEY_API_TOKEN              ``api_token``                        none (no authentication)
JOURNEY_MAX_CUSTOMERS          ``max_customers``                    100 per request
JOURNEY_MAX_EVENTS             ``max_events``                       5000 per customer
JOURNEY_MAX_BODY_BYTES         ``max_body_bytes``                   5 MiB
JOURNEY_WORKERS                ``workers``                          1 service process
JOURNEY_MAX_CONCURRENCY        ``max_concurrency``                  16 requests in progress
JOURNEY_QUEUE_LENGTH           ``queue_length``                     8 requests waiting per worker
JOURNEY_QUEUE_WAIT_MS          ``queue_wait_ms``                    50 ms longest wait per request
JOURNEY_TIMEOUT_S              ``timeout_s``                        60 s
JOURNEY_SPARK_DRIVER_MEMORY    ``spark_driver_memory``              ``3g``
JOURNEY_PROFILE_STORE          ``profile_store``                    ``sqlite:///`` home/profiles.db
JOURNEY_PROFILE_MAX_EVENTS     ``profile_max_events``               ``max_events`` (5000)
JOURNEY_PROFILE_MAX_AGE_DAYS   ``profile_max_age_days``             none (kept)
=============================  ===================================  =============================
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from journey_stage.core.errors import ConfigError

DEFAULT_MODEL_URI = "models:/journey-stage@champion"

# field -> environment variable
ENV_NAMES: dict[str, str] = {
    "model_uri": "JOURNEY_MODEL_URI",
    "model_alias": "JOURNEY_MODEL_ALIAS",
    "bento_model": "JOURNEY_BENTO_MODEL",
    "home": "JOURNEY_HOME",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "api_token": "JOURNEY_API_TOKEN",
    "max_customers": "JOURNEY_MAX_CUSTOMERS",
    "max_events": "JOURNEY_MAX_EVENTS",
    "max_body_bytes": "JOURNEY_MAX_BODY_BYTES",
    "workers": "JOURNEY_WORKERS",
    "max_concurrency": "JOURNEY_MAX_CONCURRENCY",
    "queue_length": "JOURNEY_QUEUE_LENGTH",
    "queue_wait_ms": "JOURNEY_QUEUE_WAIT_MS",
    "timeout_s": "JOURNEY_TIMEOUT_S",
    "spark_driver_memory": "JOURNEY_SPARK_DRIVER_MEMORY",
    "profile_store": "JOURNEY_PROFILE_STORE",
    "profile_max_events": "JOURNEY_PROFILE_MAX_EVENTS",
    "profile_max_age_days": "JOURNEY_PROFILE_MAX_AGE_DAYS",
}
SECRET_FIELDS = frozenset({"api_token"})
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/\s:@]*):(?P<password>[^@/\s]*)@")


_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token|access_token)=)[^&#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL, and every
    ``?password=`` style query value, replaced by ``***`` (tracking and store URIs may carry
    credentials; no output of the product shows them)."""
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text))


class RuntimeSettings(BaseModel):
    """Where and how the product runs; one object, read once per command or service start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_uri: str = Field(DEFAULT_MODEL_URI, min_length=1, description="MLflow model URI served and scored by default")
    model_alias: str | None = Field(None, description="the alias model_uri was resolved from (set by `journey serve`), reported by /metadata")
    bento_model: str | None = Field(None, description="a model in the BentoML model store (name:version) the service serves instead of model_uri, with no registry access (set in a Bento built by `journey bento`)")
    home: Path = Field(Path(".journey"), description="folder of the embedded MLflow store (and other local state)")
    tracking_uri: str | None = Field(None, description="MLflow tracking server; none = embedded SQLite store in home")
    registry_uri: str | None = Field(None, description="MLflow registry; none = the tracking URI")
    api_token: SecretStr | None = Field(None, description="bearer token the HTTP service requires (none: open)")
    max_customers: int = Field(100, ge=1, description="customers per HTTP request")
    max_events: int = Field(5000, ge=1, description="events per customer in an HTTP request")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1, description="HTTP request body size")
    workers: int = Field(1, ge=1, description="HTTP service worker processes")
    max_concurrency: int = Field(16, ge=1, description="HTTP requests in progress at once (service-wide)")
    queue_length: int = Field(
        8, ge=0, description="POST /predict requests that may wait per worker while one is scored; beyond, 429 with Retry-After at once"
    )
    queue_wait_ms: int = Field(
        50, ge=1, description="longest a POST /predict request waits for its worker (ms); then 429 with Retry-After, not scored"
    )
    timeout_s: int = Field(60, ge=1, description="seconds before an unanswered HTTP request gets 504")
    spark_driver_memory: str = Field("3g", min_length=1, description="spark.driver.memory of a local Spark session")
    profile_store: str | None = Field(None, description="live profile store: sqlite:///PATH, redis://HOST:PORT/DB or 'none' (off); unset = profiles.db in home")
    profile_max_events: int | None = Field(None, ge=1, description="newest events kept per customer in the profile store; none = max_events")
    profile_max_age_days: float | None = Field(None, gt=0, description="stored events older than this before the customer's newest are dropped; none = kept")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """The settings in ``environ`` (default: the process environment, read now); unset or empty
        variables keep their defaults. A bad value raises one :class:`ConfigError` naming it."""
        env = os.environ if environ is None else environ
        raw = {field: env[name].strip() for field, name in ENV_NAMES.items() if env.get(name, "").strip()}
        try:
            return cls(**raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0])
            name = ENV_NAMES.get(field, field)
            shown = "(hidden)" if field in SECRET_FIELDS else repr(raw.get(field))
            raise ConfigError(
                f"environment variable {name}={shown}: {first['msg'].lower()}.",
                f"set {name} to a valid value or unset it to use the default ({cls.model_fields[field].default!r}).",
            ) from None

    @property
    def home_path(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token is not None else None
