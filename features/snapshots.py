"""Training snapshots over many cutoffs and the temporal split (SPEC section 4).

Each task's split is the first rung of the protocol ladder that its data supports
(:mod:`journey_stage.features.protocols`); the rung ``temporal``, described here, is the one a
long log uses. Cutoffs lie on one grid of ``step_days``. Per task, the *test* cutoffs are the latest grid points
whose horizon is fully observed (every such point in the last ``test_span_days``, default 28, so a
90-day task is not tested on one snapshot of a few hundred rows), or the grid points from
``test_from`` on; the *validation* cutoffs (early stopping and calibration) are the latest
``validation_cutoffs`` grid points whose label window ends by the first test cutoff; the
*training* cutoffs are the earlier ones. So every training and validation label window ends at or
before the first test cutoff.

With ``purge_validation`` (default) training label windows also end by the first validation
cutoff. Without it a training row at t-7 days and a validation row at t of the same customer have
almost the same features and 90-day label windows that overlap by 83 days: early stopping and
calibration then reward memorising customers (measured on CDNOW with 300k training rows:
validation ROC-AUC 0.816 at 676 trees, test 0.836; purged: validation 0.806 at 104 trees, test
0.839; on the demo data the churn model ran to 399 of 400 trees and lost to the recency rule).
The purge costs one horizon of training cutoffs.

Two per-dataset settings change which cutoffs train (never what a test row reads):

- ``label_windows = "clip_at_test"``: training and validation cutoffs run up to the first test
  cutoff and their label windows are cut at it, (t, min(t+H, first test cutoff)]. Still no label
  reads anything after the first test cutoff. For data whose outcomes are recorded only recently
  (the Olist won deals start six months after the leads), this is the only way to train on
  recorded outcomes without looking past the test cutoff.
- ``outcomes_recorded_from``: outcomes are recorded from this date only; training and validation
  cutoffs before it (whose label windows would read an unrecorded period) are not used.

Rows are built cutoff by cutoff for the eligible customers only; at training-only cutoffs the
eligible customers are sampled *before* features are computed (eligibility needs only event
times), so features are computed for the rows that are used and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from journey_stage.features.build import build_features, feature_names
from journey_stage.features.encode import EncodedEvents, from_us
from journey_stage.features.labels import build_labels
from journey_stage.features.protocols import Census, TaskSplit, choose, eligible_at, frame_of, make_grid
from journey_stage.core.settings import TASKS, Settings

__all__ = ["TaskSplit", "CutoffPlan", "plan_cutoffs", "Snapshots", "eligible_at", "customer_subset", "build_snapshots"]


@dataclass(frozen=True)
class CutoffPlan:
    data_start_us: int
    observed_until_us: int
    warmup_days: float
    grid: list[int]
    tasks: dict[str, TaskSplit]
    sufficiency: dict[str, dict] = field(default_factory=dict)  # task -> facts and verdict (features/protocols.py)
    # task -> the split whose cutoffs are built: the chosen one; for an insufficient task its first
    # candidate (the configured split), built but unused as before the ladder existed, so that the
    # other tasks' training sample (drawn per training-only cutoff) is the one it was on long logs
    built: dict[str, TaskSplit] = field(default_factory=dict)

    def _built(self) -> list[TaskSplit]:
        return list((self.built or self.tasks).values())

    @property
    def all_cutoffs(self) -> list[int]:
        """Every cutoff the snapshots are built at."""
        return sorted({t for s in self._built() for t in s.train + s.validation + s.test})

    @property
    def whole_cutoffs(self) -> set[int]:
        """Validation and test cutoffs: built for every eligible customer (training-only ones are sampled)."""
        return {t for s in self._built() for t in s.validation + s.test}

    def describe(self) -> dict:
        def iso(ts: list[int]) -> list[str]:
            return [from_us(t).isoformat() for t in ts]

        return {
            "data_start": from_us(self.data_start_us).isoformat(),
            "observed_until": from_us(self.observed_until_us).isoformat(),
            "warmup_days": self.warmup_days,
            "tasks": {
                k: {"protocol": s.protocol, "purged": s.purged, "step_days": s.step_days, "warmup_days": s.warmup_days,
                    "train": len(s.train), "train_first": iso(s.train[:1]), "train_last": iso(s.train[-1:]),
                    "validation": iso(s.validation), "test": iso(s.test), "note": s.note,
                    "train_label_windows_end": iso([s.label_end_us]) if s.label_end_us is not None else None}
                for k, s in self.tasks.items()
            },
        }


def plan_cutoffs(events: EncodedEvents, settings: Settings) -> CutoffPlan:
    """The cutoff grid and, per task, the richest honest split of the protocol ladder with its
    sufficiency facts (pure: depends on event times, labels and settings; features/protocols.py)."""
    if events.n_events == 0:
        raise ValueError("no events")
    fr = frame_of(events, settings)
    census = Census(events, settings)
    tasks: dict[str, TaskSplit] = {}
    sufficiency: dict[str, dict] = {}
    built: dict[str, TaskSplit] = {}
    for task in TASKS:
        tasks[task], sufficiency[task], built[task] = choose(task, fr, census, settings)
    grid = make_grid(fr, settings, settings.step_days, fr.default_warmup)
    return CutoffPlan(fr.start, fr.observed_until, fr.default_warmup, grid, tasks, sufficiency, built)


@dataclass
class Snapshots:
    """Eligible customers at each cutoff: features, observed stage and every label."""

    names: list[str]
    X: np.ndarray  # float32
    customer_ids: np.ndarray
    cutoff_us: np.ndarray  # int64
    observed_stage: np.ndarray  # int8
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # task -> label (stage: int8 role index)

    def rows(self, cutoffs: list[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.cutoff_us, np.asarray(cutoffs, dtype=np.int64)))


def customer_subset(events: EncodedEvents, customers: np.ndarray) -> EncodedEvents:
    """The events of ``customers`` (indices into ``events``) only; ``source_index`` maps back."""
    keep = np.zeros(events.n_customers, bool)
    keep[customers] = True
    return events.subset(keep[events.cust])


def build_snapshots(
    events: EncodedEvents,
    plan: CutoffPlan,
    settings: Settings,
    *,
    sample_train_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Snapshots:
    """Features and labels of the eligible customers at every cutoff of ``plan``.

    Training-only cutoffs are sampled down so that their rows total at most ``sample_train_rows``;
    validation and test cutoffs are kept whole. Customers are chosen first (eligibility and the
    sample need only event times); features and labels are computed for the chosen ones only."""
    cutoffs = plan.all_cutoffs
    keep_whole = plan.whole_cutoffs
    n_train_only = max(1, len([t for t in cutoffs if t not in keep_whole]))
    per_cutoff = None if sample_train_rows is None else max(1, sample_train_rows // n_train_only)
    rng = np.random.default_rng(settings.seed)
    names: list[str] = feature_names(events.event_types, settings)
    Xs, ids, cut, obs, labs = [], [], [], [], []
    for i, t in enumerate(cutoffs):
        rows = np.flatnonzero(eligible_at(events, t, settings))
        if per_cutoff is not None and t not in keep_whole and len(rows) > per_cutoff:
            rows = np.sort(rng.choice(rows, per_cutoff, replace=False))
        sub = customer_subset(events, rows)
        ff = build_features(sub, t, settings)
        # a clipped label window ends at the task's first test cutoff (training/validation cutoffs only)
        ends = {task: s.label_end_us for task, s in (plan.built or plan.tasks).items() if s.label_end_us is not None and t < s.test[0]}
        lab = build_labels(sub, t, settings, np.arange(sub.n_customers), ends)
        Xs.append(np.ascontiguousarray(ff.X))
        ids.append(ff.customer_ids)
        cut.append(np.full(ff.X.shape[0], t, np.int64))
        obs.append(ff.observed_stage)
        labs.append({task: lab.task(task) for task in TASKS})
        del ff, sub
        if progress:
            progress(i + 1, len(cutoffs))
    if not Xs:
        raise ValueError("no cutoffs to build snapshots at")
    return Snapshots(
        names=names,
        X=np.concatenate(Xs),
        customer_ids=np.concatenate(ids),
        cutoff_us=np.concatenate(cut),
        observed_stage=np.concatenate(obs),
        labels={task: np.concatenate([lab[task] for lab in labs]) for task in TASKS},
    )
