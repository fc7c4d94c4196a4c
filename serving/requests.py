"""Request handling of the HTTP service, pure Python (no BentoML, no ASGI): validating a
``/predict`` body, scoring its customers, describing the loaded model, and :class:`Scorer`, the
model a worker loads once (in the background) and answers with.

Scoring goes through :func:`journey_stage.model.scoring.score_records`, the same core
(:func:`journey_stage.model.scoring.score_columns`) as batch scoring and the Python API's
:func:`journey_stage.model.scoring.score_events`, so the same history gets the same answer.
Invalid requests raise :class:`RequestProblems`, which the service answers as JSON.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from journey_stage.core.coerce import EXPECTED_ISO, AsOfError, parse_as_of
from journey_stage.core.errors import JourneyError
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.history import merge_history, require_events_or_store, stored_rows
from journey_stage.serving.problems import INPUT_HINT, MAX_PROBLEMS_SHOWN, RequestProblems, _shown
from journey_stage.serving.schemas import Metadata, PredictResponse, request_models

logger = logging.getLogger("bentoml.journey")

# ---- the loaded model ------------------------------------------------------------------------

class Scorer:
    """The model and playbook one worker answers with, loaded once in a background thread
    (:meth:`start`); until then :attr:`ready` is False and :attr:`load_error` says why when
    loading failed."""

    def __init__(self, settings: RuntimeSettings, model_folder: str | None = None) -> None:
        self.settings = settings
        self.model_folder = model_folder  # an embedded model (a Bento's): loaded from disk, no registry
        self.predictor: Any = None
        self.playbook: Any = None
        self.store: Any = None  # the profile store (JOURNEY_PROFILE_STORE); None when profiles are off
        self.load_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    def start(self) -> threading.Thread:
        loader = threading.Thread(target=self.load, name="journey-model-loader", daemon=True)
        loader.start()
        return loader

    def load(self) -> None:
        from journey_stage.model.playbook import load_playbook
        from journey_stage.model.registry import load_predictor
        from journey_stage.serving.profiles import open_checked

        uri = self.model_folder or self.settings.model_uri
        t0 = time.time()
        try:
            predictor = load_predictor(uri, runtime=self.settings)
            if self.settings.model_alias:  # the alias `journey serve` (or the service's start) pinned to this version
                predictor.info["alias"] = self.settings.model_alias
            playbook = load_playbook()
            self._warm_up(predictor, playbook)
            store = open_checked(self.settings)
        except JourneyError as exc:
            self.load_error = str(exc)
            logger.error("journey service: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - keep serving probes; the log has the details
            self.load_error = f"cannot load model {uri!r}: {type(exc).__name__}"
            logger.exception("journey service: cannot load model %s", uri)
            return
        # Everything loaded so far (model, libraries) lives as long as the process: move it out of
        # the garbage collector's sight, so full collections stay short under load (gc.freeze).
        gc.collect()
        gc.freeze()
        self.playbook = playbook
        self.store = store
        self.predictor = predictor
        logger.info(
            "journey service: loaded %s (%s v%s) in %.1fs",
            uri, predictor.info.get("name"), predictor.info.get("version"), time.time() - t0,
        )

    def _warm_up(self, predictor: Any, playbook: Any) -> None:
        """The explainers built and one prediction made before declaring readiness, so the first
        requests are not slow."""
        predictor.prepare()
        event_type = predictor.taxonomy.event_types[0]
        customer = request_models(self.settings).customer(
            customer_id="warm-up", events=[{"timestamp": "2025-01-01T00:00:00Z", "event_type": event_type}]
        )
        score_request(predictor, [customer], "2025-01-02T00:00:00Z", playbook)

    def predict(self, customers: Sequence[Any], as_of: str | None) -> list[dict]:
        """:func:`score_request` with the loaded model; :class:`RequestProblems` when invalid."""
        return score_request(self.predictor, customers, as_of, self.playbook, self.store)

    def answer(self, customers: Sequence[Any], as_of: str | None) -> bytes:
        """The JSON body of a 200 answer (:class:`PredictResponse`), built off the event loop."""
        return PredictResponse.model_validate({"predictions": self.predict(customers, as_of)}).model_dump_json().encode()

    def metadata(self) -> Metadata:
        from journey_stage.serving.metadata import metadata_of

        return metadata_of(self.predictor, self.settings)


# ---- scoring (pure Python, no HTTP) ------------------------------------------------------------

def request_as_of(as_of: str | None) -> pd.Timestamp:
    """``as_of`` of a request (ISO 8601, naive = UTC), or now (UTC, to the microsecond) when it is
    absent; :class:`RequestProblems` (400 at ``as_of``) when it is blank, not an ISO 8601 time or
    outside the supported time range."""
    try:
        if as_of is not None and not as_of.strip():
            raise AsOfError("as_of is blank", "bad_timestamp", EXPECTED_ISO)
        parsed = parse_as_of(as_of, "as_of")
    except AsOfError as exc:
        raise RequestProblems(
            400, "invalid request: 1 problem(s)",
            [{"path": "as_of", "message": f"{exc.expected}, got {_shown(as_of)}", "code": exc.code}],
            "fix the listed fields.",
        ) from None
    return parsed if parsed is not None else pd.Timestamp.now(tz="UTC").floor("us")


def score_request(predictor: Any, customers: Sequence[Any], as_of: str | None, playbook: Any = None, store: Any = None) -> list[dict]:
    """Records of SPEC 8 (plus ``warnings``) for the customers of one request (``CustomerIn``
    objects), in request order. With a profile ``store``, each customer's stored history is
    merged with the events sent (a customer may come without events: its stored history answers)."""
    t = request_as_of(as_of)
    ids = _unique_ids(customers)
    require_events_or_store(customers, store)
    warnings: list[list[dict]] = [[] for _ in customers]
    records, eligible = _score_customers(predictor, customers, ids, t, warnings, playbook, store)
    as_of_iso = _iso(t)
    model = predictor.identity() | {"alias": predictor.info.get("alias")}
    out = []
    for i, cid in enumerate(ids):
        rec = records.get(cid)
        if rec is None:
            rec = _unscored_record(cid, as_of_iso, model)
            warnings[i].append({"code": "no_history", "message": "no event at or before as_of: the customer cannot be scored", "count": 0})
        elif not eligible.get(cid, True):
            days = predictor.settings.eligibility_days
            warnings[i].append({
                "code": "outside_eligibility_window",
                "message": f"no event in the {days:g} days before as_of: batch scoring skips such customers and the model saw none in training",
                "count": None,
            })
        rec["model"] = rec.get("model", {}) | model  # what the scoring core says of the model, and the alias
        rec["warnings"] = warnings[i]
        out.append(rec)
    return out


def _unique_ids(customers: Sequence[Any]) -> list[str]:
    """The customer ids (stripped), in request order; 400 when one comes twice."""
    ids = [c.customer_id.strip() for c in customers]
    first_at: dict[str, int] = {}
    dup = []
    for i, cid in enumerate(ids):
        if cid in first_at:
            dup.append({"path": f"customers[{i}].customer_id", "message": f"duplicate customer_id {_shown(cid)} (also at customers[{first_at[cid]}])",
                        "code": "duplicate_customer"})
        else:
            first_at[cid] = i
    if dup:
        raise RequestProblems(400, f"invalid request: {len(dup)} problem(s)", dup, "send each customer once per request.")
    return ids


def _score_customers(
    predictor: Any, customers: Sequence[Any], ids: list[str], t: pd.Timestamp, warnings: list[list[dict]], playbook: Any,
    store: Any = None,
) -> tuple[dict[str, dict], dict[str, bool]]:
    """Scored records and eligibility by customer id; appends each customer's data warnings
    (duplicates among the sent events removed, events after ``t``) to ``warnings``."""
    from journey_stage.core.events import canonical_records, canonical_rows, merge_rows, tuples_frame
    from journey_stage.model.scoring import score_records

    records = [(ids[i], e.timestamp, e.event_type, e.channel, e.value, e.campaign) for i, c in enumerate(customers) for e in c.events or ()]
    rows = canonical_rows(records, predictor.taxonomy)
    stored = stored_rows(store, customers, ids, predictor.taxonomy, warnings)
    if rows is not None:  # plain clean input (and the stored history): encoded without a DataFrame
        return _score_rows(predictor, rows, merge_rows(rows, stored) if stored else rows, records, ids, t, warnings, playbook)
    recs_by_id: dict[str, dict] = {}
    eligible_by_id: dict[str, bool] = {}
    events = canonical_records(records, predictor.taxonomy)  # plain clean input: no pandas costs
    if events is None:  # where each record came from: customers[i].events[j]
        at = [(i, j) for i, c in enumerate(customers) for j in range(len(c.events or ()))]
        events = _validated_events(records, [i for i, _ in at], [j for _, j in at], predictor.taxonomy)
    n_raw, n_kept = Counter(r[0] for r in records), Counter(events["customer_id"].tolist())
    if stored:
        events = merge_history(events, tuples_frame(stored))
    if events.empty:
        return recs_by_id, eligible_by_id
    kept_ids = np.asarray(events["customer_id"].tolist(), dtype=object)
    after = events["timestamp"].array.asi8 > t.value // 1000  # microseconds, UTC
    _data_warnings(ids, n_raw, n_kept, Counter(kept_ids[after].tolist()), warnings)
    if not after.all():
        for rec in score_records(predictor, events, t, playbook=playbook):
            eligible_by_id[rec["customer_id"]] = rec.pop("eligible")
            recs_by_id[rec["customer_id"]] = rec
    return recs_by_id, eligible_by_id


def _score_rows(
    predictor: Any, sent: list[tuple], rows: list[tuple], records: list[tuple], ids: list[str], t: pd.Timestamp,
    warnings: list[list[dict]], playbook: Any,
) -> tuple[dict[str, dict], dict[str, bool]]:
    """:func:`_score_customers` on canonical ``rows`` (the canonical ``sent`` rows of
    :func:`journey_stage.core.events.canonical_rows`, merged with the stored ones), encoded
    without a DataFrame (a test compares the answers with the DataFrame path's)."""
    from journey_stage.features.encode import encode_rows
    from journey_stage.model.scoring import score_records

    t_us = t.value // 1000  # microseconds, UTC
    late = Counter(r[0] for r in rows if r[1] > t_us)
    _data_warnings(ids, Counter(map(itemgetter(0), records)), Counter(map(itemgetter(0), sent)), late, warnings)
    scored = score_records(predictor, encode_rows(rows, predictor.taxonomy), t, playbook=playbook) if sum(late.values()) < len(rows) else []
    eligible_by_id = {rec["customer_id"]: rec.pop("eligible") for rec in scored}
    return {rec["customer_id"]: rec for rec in scored}, eligible_by_id


def _data_warnings(ids: list[str], n_raw: Counter, n_kept: Counter, late: Counter, warnings: list[list[dict]]) -> None:
    """Appends each customer's data warnings: duplicates among the sent events removed, events after as_of."""
    for i, cid in enumerate(ids):
        removed = int(n_raw.get(cid, 0) - n_kept.get(cid, 0))
        if removed:
            warnings[i].append({"code": "duplicate_events_removed", "message": f"{removed} exact duplicate event(s) removed", "count": removed})
        n_late = int(late.get(cid, 0))
        if n_late:
            warnings[i].append({
                "code": "events_after_as_of",
                "message": f"{n_late} event(s) after as_of were ignored (point-in-time scoring)",
                "count": n_late,
            })


def _unscored_record(cid: str, as_of_iso: str, model: dict) -> dict:
    """The answer for a customer without history at or before as_of."""
    return {
        "customer_id": cid, "as_of": as_of_iso, "observed_stage": None, "stage": None, "stage_probabilities": None,
        "churn_probability": None, "advocacy_probability": None, "conversion_probability": None,
        "next_best_action": None, "reasons": {}, "model": model,
    }


def _validated_events(records: list[tuple], cust_of_row: list[int], event_of_row: list[int], taxonomy: Any,
                      path_of: Callable[[int, int, str], str] | None = None) -> pd.DataFrame:
    """The general validation path (the one batch files take); its problems become field-level 400s
    (the first :data:`MAX_PROBLEMS_SHOWN` listed, every one counted)."""
    from journey_stage.core.errors import where
    from journey_stage.core.events import validate_events

    columns = ("customer_id", "timestamp", "event_type", "channel", "value", "campaign")
    raw = pd.DataFrame({
        k: np.array([r[i] for r in records], dtype=np.float64 if k == "value" else object) for i, k in enumerate(columns)
    })
    try:
        result = validate_events(raw, "request", taxonomy)
    except JourneyError as exc:
        raise RequestProblems(400, f"invalid request: {exc.message}", [], exc.hint) from None
    if not result.n_problems:
        return result.events
    problems = []
    for p in result.problems[:MAX_PROBLEMS_SHOWN]:
        i, j = cust_of_row[p.row - 1], event_of_row[p.row - 1]
        if path_of is not None:
            path = path_of(i, j, p.column)
        else:
            path = f"customers[{i}].customer_id" if p.column == "customer_id" else f"customers[{i}].events[{j}].{p.column}"
        prefix = f"{where('request', p.row, p.column)}: "
        msg = p.message[len(prefix):] if p.message.startswith(prefix) else p.message
        problems.append({"path": path, "message": msg, "code": p.code})
    raise RequestProblems(400, f"invalid request: {result.n_problems} problem(s)", problems, INPUT_HINT, total=result.n_problems)


def _iso(t: pd.Timestamp) -> str:
    from journey_stage.features.encode import iso_of_us, to_us

    return iso_of_us(to_us(t))
