"""Labels of SPEC section 4, as pure functions of (events, cutoff t, settings).

A label at t reads the future window (t, t+H] and, for "converted at or before t", the history.
Labels are NaN where a task does not apply (churn for never-converted customers; conversion for
converted ones when ``conversion_scope = "unconverted"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from journey_stage.features.encode import US_PER_DAY, EncodedEvents
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import LAPSED_INDEX, ROLE_INDEX

ADV, RET, DEC, CONS, AWA = (ROLE_INDEX[r] for r in ("advocacy", "retention", "decision", "consideration", "awareness"))


@dataclass(frozen=True)
class Labels:
    stage: np.ndarray  # int8 role index or LAPSED_INDEX
    churn: np.ndarray  # float: 1 churned, 0 active, NaN not scored
    advocacy: np.ndarray  # float 0/1
    conversion: np.ndarray  # float 0/1 or NaN

    def task(self, name: str) -> np.ndarray:
        return getattr(self, name)


def _flag(events: EncodedEvents, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(events.n_customers, bool)
    out[events.cust[mask]] = True
    return out


def task_applies(task: str, converted: np.ndarray, settings: Settings) -> np.ndarray:
    """Customers a binary task is defined for, given whether each converted at or before t:
    churn only for converted customers; conversion for everyone, or only the unconverted
    (``conversion_scope = "unconverted"``); advocacy for everyone. Labels are NaN elsewhere, and
    the predictor gives no probability and no reasons there."""
    converted = np.asarray(converted, dtype=bool)
    if task == "churn":
        return converted
    if task == "conversion" and settings.conversion_scope == "unconverted":
        return ~converted
    return np.ones(len(converted), dtype=bool)


def build_labels(
    events: EncodedEvents, t_us: int, settings: Settings, customers: np.ndarray, window_end_us: Mapping[str, int] | None = None
) -> Labels:
    """Labels at ``t`` for ``customers`` (indices into ``events.customer_ids``).

    ``window_end_us`` (task -> time) cuts a task's label window (t, t+H] at that time: the label
    then reads only events in (t, min(t+H, end)] (``label_windows = "clip_at_test"`` passes the
    first test cutoff for training and validation cutoffs, so no label reads past it)."""
    H = settings.horizons
    ends = window_end_us or {}

    def future(days: float, task: str) -> np.ndarray:
        end = t_us + int(days * US_PER_DAY)
        if task in ends:
            end = min(end, int(ends[task]))
        return (events.ts > t_us) & (events.ts <= end)

    converted = _flag(events, events.conv & (events.ts <= t_us))[customers]

    f = future(H.stage, "stage")
    any_f = _flag(events, f)[customers]
    adv_f = _flag(events, f & (events.role == ADV))[customers]
    dec_f = _flag(events, f & ((events.role == DEC) | events.conv))[customers]
    cons_f = _flag(events, f & (events.role == CONS))[customers]
    pre = np.where(~any_f, LAPSED_INDEX, np.where(dec_f, DEC, np.where(cons_f, CONS, AWA)))
    post = np.where(any_f, RET, LAPSED_INDEX)
    stage = np.where(adv_f, ADV, np.where(converted, post, pre)).astype(np.int8)

    fc = future(H.churn, "churn")
    if settings.churn_activity == "conversions":
        fc = fc & events.conv
    active = _flag(events, fc)[customers]
    churn = np.where(task_applies("churn", converted, settings), (~active).astype(float), np.nan)

    advocacy = _flag(events, future(H.advocacy, "advocacy") & (events.role == ADV))[customers].astype(float)

    conversion = _flag(events, future(H.conversion, "conversion") & events.conv)[customers].astype(float)
    conversion = np.where(task_applies("conversion", converted, settings), conversion, np.nan)
    return Labels(stage=stage, churn=churn, advocacy=advocacy, conversion=conversion)
