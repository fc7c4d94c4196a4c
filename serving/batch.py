"""Batch scoring of customer lists: read, validate, score in customer partitions, write atomically."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from journey import io
from serving.scoring import output_columns, score_events


def _partition_of(customer_ids: pd.Series, partitions: int) -> np.ndarray:
    """Stable customer -> partition assignment (crc32 of the id)."""
    codes, uniq = pd.factorize(customer_ids)
    part_of_uniq = np.array([zlib.crc32(str(u).encode()) % partitions for u in uniq], dtype=np.int64)
    return part_of_uniq[codes]


def score_file(events_path, out_path, *, model_uri="models:/journey-stage@champion", as_of=None, engine="local",
               rejects=None, reasons=False, spark_master="local[*]", partitions=16, progress=None, predictor=None) -> dict:
    from training.tracking import load_predictor

    predictor = predictor or load_predictor(model_uri)
    if engine == "spark":
        from serving.spark import score_spark

        return score_spark(events_path, out_path, predictor=predictor, as_of=as_of, rejects=rejects, reasons=reasons, master=spark_master)
    result = io.read_events(events_path, predictor.taxonomy, allow_rejects=rejects is not None)
    if rejects is not None:
        io.write_table(result.rejects, rejects)
    events = result.events
    t = as_of if as_of is not None else (events["timestamp"].max() if len(events) else None)
    part = _partition_of(events["customer_id"], partitions) if len(events) else np.zeros(0, int)
    frames = []
    for p in range(partitions):
        sub = events.loc[part == p]
        if len(sub):
            frames.append(score_events(predictor, sub, t, reasons=reasons))
    scored = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=output_columns(predictor, reasons))
    scored = scored.sort_values("customer_id", ignore_index=True)
    io.write_table(scored, out_path)
    n_customers = events["customer_id"].nunique() if len(events) else 0
    return {"scored": int(len(scored)), "ineligible": int(n_customers - len(scored)), "rejected": int(len(result.rejects))}
