"""Assembly of the output frames from a finished :class:`~journey_stage.synthetic.simulator.Simulator`.

The simulator's chunks of integer codes are concatenated, sorted once by (customer rank, second)
and turned into Arrow-backed ``str`` columns through dictionary arrays, so no Python object is
made per row. Customers are numbered (``c0000001``, ...) in order of first touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.simulator import Simulator
from journey_stage.synthetic.vocabulary import ACQUISITIONS, CHANNELS, EVENT_TYPES, STAGES

__all__ = ["Journeys", "assemble"]


@dataclass(frozen=True)
class Journeys:
    """Everything the simulator knows.

    - ``events``: the touchpoint log (same frame as :func:`generate_events`).
    - ``stages``: the latent stage path, one row per stage episode: ``customer_id``, ``stage``
      (including ``lapsed`` spells), ``start`` and ``end`` (the next episode's start, or the end
      of the period). Sorted by (customer_id, start).
    - ``customers``: one row per customer: ``customer_id``, ``acquisition``, ``referred_by``
      (customer_id or null), ``first_seen``, and the latent traits ``activity``, ``intent``,
      ``loyalty``, ``advocacy``, ``order_value`` (typical order value).
    """

    events: pd.DataFrame
    stages: pd.DataFrame
    customers: pd.DataFrame


def assemble(sim: Simulator, p: GeneratorParams, truth: bool) -> Journeys | pd.DataFrame:
    """The events frame of a finished simulation, or (``truth``) all three frames.

    Releases the simulator's event chunks as it goes.
    """
    n = sim.n
    # customer ids are handed out in order of first touch
    rank = np.empty(n, np.int64)
    rank[np.argsort(sim.pop.arrival_sec, kind="stable")] = np.arange(n)
    ids = _customer_ids(n)
    events = _events_frame(sim, p, rank, ids)
    if not truth:
        return events
    return Journeys(events=events, stages=_stages_frame(sim, rank, ids),
                    customers=_customers_frame(sim, rank, ids))


# --------------------------------------------------------------------------------------------
# The three frames
# --------------------------------------------------------------------------------------------


def _events_frame(sim: Simulator, p: GeneratorParams, rank: np.ndarray, ids: pa.Array) -> pd.DataFrame:
    """The touchpoint log, sorted by (customer rank, second), columns EVENT_COLUMNS."""
    key_c, t_sec, etype, chan, estage, camp, value = _sorted_event_columns(sim, rank)
    _apply_once_only(etype, key_c, sim.tb.once_only)
    months = sim.months
    return pd.DataFrame(
        {
            "customer_id": _dict_to_str(key_c, ids),
            "timestamp": _timestamps(months.start_s, t_sec),
            "event_type": _dict_to_str(etype, list(EVENT_TYPES)),
            "channel": _dict_to_str(chan, list(CHANNELS)),
            "value": value,
            "campaign": _dict_to_str(
                np.maximum(camp, 0), _campaign_names(p, months.month0, months.n_months), camp < 0
            ),
            "true_stage": _dict_to_str(estage, list(STAGES)),
        },
        copy=False,
    )


def _sorted_event_columns(sim: Simulator, rank: np.ndarray) -> tuple[np.ndarray, ...]:
    """(customer rank, t_sec, type, channel, stage, campaign, value), sorted by rank then time."""
    ev, sim.ev = sim.ev, {}

    def take(name: str, dtype: Any, order: np.ndarray | None = None) -> np.ndarray:
        """Concatenate (and release) the chunks of one column, optionally reordered."""
        chunks = ev.pop(name)
        col = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
        chunks.clear()
        return col if order is None else col[order]

    cust = take("cust", np.int32)
    t_sec = take("t", np.int64)
    key_c = rank[cust]
    tbits = max(int(sim.end_sec + 1).bit_length(), 1)
    if sim.n.bit_length() + tbits <= 62:
        order = np.argsort((key_c << tbits) | t_sec, kind="stable")
    else:  # pragma: no cover - astronomically large inputs
        order = np.lexsort((t_sec, key_c))
    del key_c
    key_c = rank[cust[order]]
    del cust
    t_sec = t_sec[order]
    etype = take("type", np.int8, order)
    chan = take("chan", np.int8, order)
    estage = take("stage", np.int8, order)
    camp = take("camp", np.int32, order)
    value = take("value", np.float64, order)
    return key_c, t_sec, etype, chan, estage, camp, value


def _apply_once_only(etype: np.ndarray, key_c: np.ndarray, once_only: list[tuple[int, int]]) -> None:
    """Once-only events: keep the first per customer, later ones become the paired type (in place)."""
    for a, b in once_only:
        pos = np.flatnonzero(etype == a)
        if len(pos) > 1:
            c = key_c[pos]
            dup = np.zeros(len(pos), bool)
            dup[1:] = c[1:] == c[:-1]
            etype[pos[dup]] = b


def _stages_frame(sim: Simulator, rank: np.ndarray, ids: pa.Array) -> pd.DataFrame:
    """The latent stage path: one row per episode or lapse, ending where the next one starts."""
    cat = np.concatenate
    st = sim.st
    s_c = rank[cat(st["cust"])] if st["cust"] else np.zeros(0, np.int64)
    s_t = cat(st["t"]) if st["t"] else np.zeros(0, np.int64)
    s_s = cat(st["stage"]) if st["stage"] else np.zeros(0, np.int8)
    o = np.lexsort((s_t, s_c))
    s_c, s_t, s_s = s_c[o], s_t[o], s_s[o]
    s_end = np.full(len(s_t), sim.end_sec, np.int64)
    same = np.zeros(len(s_t), bool)
    if len(s_t) > 1:
        same[:-1] = s_c[1:] == s_c[:-1]
        s_end[:-1] = np.where(same[:-1], s_t[1:], sim.end_sec)
    start_s = sim.months.start_s
    return pd.DataFrame(
        {
            "customer_id": _dict_to_str(s_c, ids),
            "stage": _dict_to_str(s_s, list(STAGES)),
            "start": _timestamps(start_s, s_t),
            "end": _timestamps(start_s, s_end),
        }
    )


def _customers_frame(sim: Simulator, rank: np.ndarray, ids: pa.Array) -> pd.DataFrame:
    """One row per customer, in customer-id order: acquisition, referrer, first touch, traits."""
    n, pop = sim.n, sim.pop
    inv = np.argsort(rank)  # global index of the customer with each rank
    ref = pop.referred_by[inv]
    has_ref = ref >= 0
    return pd.DataFrame(
        {
            "customer_id": _dict_to_str(np.arange(n), ids),
            "acquisition": _dict_to_str(pop.acq[inv], list(ACQUISITIONS)),
            "referred_by": _dict_to_str(np.where(has_ref, rank[np.maximum(ref, 0)], 0), ids, ~has_ref),
            "first_seen": _timestamps(sim.months.start_s, pop.arrival_sec[inv]),
            "activity": pop.act[inv],
            "intent": pop.z[inv],
            "loyalty": pop.loy[inv],
            "advocacy": pop.adv[inv],
            "order_value": np.round(pop.spend[inv], 2),
        }
    )


# --------------------------------------------------------------------------------------------
# Column builders
# --------------------------------------------------------------------------------------------


def _str_dtype() -> pd.StringDtype:
    return pd.StringDtype("pyarrow", na_value=np.nan)


def _dict_to_str(codes: np.ndarray, names: list[str] | pa.Array, null_mask: np.ndarray | None = None) -> pd.arrays.ArrowStringArray:
    """Integer codes + dictionary -> pandas 'str' array, without Python-level loops."""
    dictionary = names if isinstance(names, pa.Array) else pa.array(names, type=pa.large_string())
    idx = pa.array(codes, mask=null_mask)
    arr = pa.DictionaryArray.from_arrays(idx, dictionary).cast(pa.large_string())
    return pd.array(arr, dtype=_str_dtype())


def _customer_ids(n: int) -> pa.Array:
    """'c0000001', 'c0000002', ... as an Arrow string array built from raw buffers."""
    width = max(7, len(str(n)))
    if n == 0:
        return pa.array([], type=pa.large_string())
    num = np.arange(1, n + 1, dtype=np.int64)
    digits = np.empty((n, width + 1), np.uint8)
    digits[:, 0] = ord("c")
    for j in range(width, 0, -1):
        digits[:, j] = ord("0") + num % 10
        num //= 10
    offsets = np.arange(0, (n + 1) * (width + 1), width + 1, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes())]
    )


def _timestamps(start_s: np.datetime64, t_sec: np.ndarray) -> pd.arrays.DatetimeArray:
    us = (start_s.astype("datetime64[us]") + (t_sec * 1_000_000).astype("timedelta64[us]"))
    return pd.array(pd.DatetimeIndex(us).tz_localize("UTC"))


def _campaign_names(p: GeneratorParams, month0: np.datetime64, n_months: int) -> list[str]:
    K = p.campaigns_per_channel_month
    months = [(month0 + np.timedelta64(i, "M")).astype(str).replace("-", "") for i in range(n_months)]
    return [f"{c}_{mo}_{k + 1}" for c in CHANNELS for mo in months for k in range(K)]
