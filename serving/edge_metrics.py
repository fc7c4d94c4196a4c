"""Prometheus metrics of the answers :class:`~journey_stage.serving.middleware.Edge` sends itself
(``POST /predict`` and ``POST /events`` always; refusals such as 401 and 429 on any known path):
those requests never reach BentoML's own metrics middleware, so they are counted here, in the
same ``/metrics`` document (BentoML's multiprocess Prometheus directory, every worker summed).

* ``journey_request_total{endpoint, http_response_code}``
* ``journey_request_duration_seconds{endpoint, http_response_code}`` (histogram)
* ``journey_request_in_progress{endpoint}`` (summed over live workers)

``prometheus_client`` is imported on first use, in the worker, after BentoML has pointed it at its
multiprocess directory (imported earlier it would count in memory, invisible to ``/metrics``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

logger = logging.getLogger("bentoml.journey")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class EdgeMetrics:
    """The three metrics, created on first use (unregistered: in multiprocess mode ``/metrics`` reads
    every worker's files). One per process (:func:`shared_metrics`): two instances would write the
    same per-process file from separate values. Recording never raises: a metrics failure is
    logged and the answer goes out."""

    def __init__(self) -> None:
        self._made: tuple[Any, Any, Any] | None = None

    def _metrics(self) -> tuple[Any, Any, Any]:
        if self._made is None:
            from prometheus_client import Counter, Gauge, Histogram

            labels = ["endpoint", "http_response_code"]
            self._made = (
                Counter("journey_request", "Requests answered by the journey service's edge", labels, registry=None),
                Histogram("journey_request_duration_seconds", "Seconds from arrival to answer", labels, buckets=BUCKETS, registry=None),
                Gauge("journey_request_in_progress", "Requests in progress", ["endpoint"], multiprocess_mode="livesum", registry=None),
            )
        return self._made

    def started(self, endpoint: str) -> None:
        self._record(lambda m: m[2].labels(endpoint).inc())

    def finished(self, endpoint: str) -> None:
        self._record(lambda m: m[2].labels(endpoint).dec())

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        def record(m: tuple) -> None:
            m[0].labels(endpoint, str(status)).inc()
            m[1].labels(endpoint, str(status)).observe(seconds)

        self._record(record)

    def _record(self, update: Callable[[tuple], None]) -> None:
        try:
            update(self._metrics())
        except Exception:  # noqa: BLE001 - metrics must never turn an answer into an error
            logger.exception("journey service: could not record request metrics")


@functools.cache
def shared_metrics() -> EdgeMetrics:
    """This process's :class:`EdgeMetrics`."""
    return EdgeMetrics()
