"""``GET /metadata``: what the loaded model is, its taxonomy, training data, test metrics and the
service's limits."""

from __future__ import annotations

from typing import Any

from journey_stage.core.coerce import finite_or_none
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.schemas import Metadata, ModelInfo, TaxonomyInfo


def metadata_of(predictor: Any, settings: RuntimeSettings) -> Metadata:
    """``GET /metadata`` for the loaded ``predictor`` under the service's ``settings``."""
    info = predictor.info
    tax = predictor.taxonomy
    tasks = {t: "trained" for t in predictor.models} | {t: f"skipped: {why}" for t, why in predictor.skipped.items()}
    return Metadata(
        model=ModelInfo(
            name=str(info.get("name", "")), version=str(info.get("version", "")), alias=info.get("alias"), served=predictor.served,
            uri=str(info.get("uri", settings.model_uri)),
        ),
        taxonomy=TaxonomyInfo(
            name=tax.name, description=tax.description or "", stages=tax.stages,
            event_types={e: tax.role_stage[r] for e, r in sorted(tax.event_role.items())},
            conversion_events=sorted(tax.conversion_events),
        ),
        training_data=dict(info.get("dataset", {})),
        test_metrics={k: finite_or_none(v) for k, v in info.get("test_metrics", {}).items()},
        tasks=tasks,
        feature_version=str(predictor.feature_version),
        horizons_days={k: float(v) for k, v in predictor.settings.horizons.model_dump().items()},
        limits={
            "max_customers": settings.max_customers, "max_events": settings.max_events, "max_body_bytes": settings.max_body_bytes,
            "max_concurrency": settings.max_concurrency, "queue_length": settings.queue_length, "queue_wait_ms": settings.queue_wait_ms,
            "timeout_s": settings.timeout_s, "workers": settings.workers,
        },
        auth_required=settings.token is not None,
    )
