"""The protocol ladder and the data-sufficiency census (SPEC 4 and 6).

For each task the planner lists candidate train/validation/test splits, richest first, and keeps
the first one whose rows hold enough of each class (``Settings.min_*_positives``):

1. ``temporal`` — the configured split: test span (or ``--test-from``), ``validation_cutoffs``
   validation cutoffs, purge (training label windows end by the first validation cutoff).
2. ``short`` — one test cutoff (``test_cutoffs``; or the ``--test-from`` ones), fewer validation
   cutoffs, on a grid whose step and warm-up shrink with the log (a step of span/13 days, at
   most ``step_days`` and at least one day; a warm-up of one step).
3. ``unpurged`` — as ``short`` without the purge; the leakage risk is stated.
4. ``crossfit`` — no validation slice: every cutoff whose label window ends by the first test
   cutoff trains, and early stopping and calibration are cross-fitted over customer folds.

Every rung keeps the SPEC 4 rule: every training label window ends by the first test cutoff
(or is cut there, ``label_windows = "clip_at_test"``). A task is insufficient only when no rung
has one honest split with enough rows; the reason then says what is missing in numbers.
Everything here is a pure function of the event times, the labels and the settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from journey_stage.core import errors
from journey_stage.core.settings import TASKS, Settings
from journey_stage.features.encode import US_PER_DAY, EncodedEvents, from_us, to_us
from journey_stage.features.labels import build_labels

SHORT_LOG_CUTOFFS = 13  # the short rungs' step: at most span / 13 days (a 92-day log keeps weekly cutoffs)
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class TaskSplit:
    train: list[int]
    validation: list[int]
    test: list[int]
    note: str = ""
    label_end_us: int | None = None  # training/validation label windows are cut here (clip_at_test)
    protocol: str = "temporal"  # the rung of the ladder (module docstring)
    purged: bool = True
    step_days: float = 7.0
    warmup_days: float = 0.0

    @property
    def crossfit(self) -> bool:
        return self.protocol == "crossfit"

    @property
    def usable(self) -> bool:
        return bool(self.train and self.test and (self.validation or self.crossfit))

    def describe(self) -> str:
        """One line: what the protocol is."""
        if self.crossfit:
            how = "no validation slice: early stopping and calibration cross-fitted over customer folds of the training cutoffs"
        else:
            how = f"{len(self.validation)} validation cutoff(s), " + ("purged" if self.purged else "not purged")
        return f"{self.protocol}: {how}; step {errors.days(self.step_days)} d, warm-up {errors.days(self.warmup_days)} d"


@dataclass(frozen=True)
class Frame:
    """The log's time frame: first event, end of the last observed day, and the test anchor."""

    start: int
    observed_until: int
    span_days: float
    anchor: int
    default_warmup: float
    last: int = 0  # the last event

    def events_span(self) -> str:
        """When the events run, for messages: "1998-03-31 .. 1998-06-30" (times when under two days)."""
        fmt = (lambda t: from_us(t).strftime("%Y-%m-%d %H:%M")) if self.last - self.start < 2 * US_PER_DAY else (lambda t: from_us(t).date().isoformat())
        return f"{fmt(self.start)} .. {fmt(self.last)}"


def frame_of(events: EncodedEvents, settings: Settings) -> Frame:
    start = int(events.ts.min())
    observed_until = (int(events.ts.max()) // US_PER_DAY + 1) * US_PER_DAY  # the day of the last event is observed
    span = (observed_until - start) / US_PER_DAY
    warmup = settings.warmup_days if settings.warmup_days is not None else min(settings.lookback_days, 0.25 * span)
    if settings.test_from is not None:
        anchor = to_us(settings.test_from)
    else:
        anchor = (observed_until - int(min(horizons_us(settings).values()))) // US_PER_DAY * US_PER_DAY
    return Frame(start, observed_until, span, anchor, float(warmup), int(events.ts.max()))


def horizons_us(settings: Settings) -> dict[str, int]:
    return {task: int(getattr(settings.horizons, task) * US_PER_DAY) for task in TASKS}


def short_grid_params(fr: Frame, settings: Settings) -> tuple[float, float]:
    """(step, warm-up) in days of the short rungs: both shrink with the log."""
    step = settings.step_days if fr.span_days >= SHORT_LOG_CUTOFFS * settings.step_days else max(1.0, math.floor(fr.span_days / SHORT_LOG_CUTOFFS))
    warmup = settings.warmup_days if settings.warmup_days is not None else min(fr.default_warmup, step)
    return float(step), float(warmup)


def make_grid(fr: Frame, settings: Settings, step_days: float, warmup_days: float) -> list[int]:
    """Cutoffs every ``step_days`` back from the test anchor to the warm-up (and, with
    ``test_from``, forward while the shortest horizon is observed)."""
    first_allowed = fr.start + int(warmup_days * US_PER_DAY)
    step = int(step_days * US_PER_DAY)
    n = max(0, (fr.anchor - first_allowed) // step + 1) if fr.anchor >= first_allowed else 0
    grid = [fr.anchor - k * step for k in range(int(n))][::-1]
    if settings.test_from is not None:
        shortest = min(horizons_us(settings).values())
        t = fr.anchor + step
        while t + shortest <= fr.observed_until:
            grid.append(t)
            t += step
    return grid


def test_cutoffs(grid: list[int], H: int, fr: Frame, settings: Settings, span: bool, step: int) -> list[int]:
    observed = [t for t in grid if t + H <= fr.observed_until]
    if settings.test_from is not None:
        return [t for t in observed if t >= fr.anchor]
    test = observed[-settings.test_cutoffs:]
    if span and observed and settings.test_span_days:  # every observed cutoff in the last test_span_days
        width = int(settings.test_span_days * US_PER_DAY)
        if len(test) * step < width:
            test = [t for t in observed if t > observed[-1] - width]
    return test


def split_for(task: str, grid: list[int], fr: Frame, settings: Settings, *, protocol: str, span: bool,
              n_validation: int, purge: bool, step_days: float, warmup_days: float) -> TaskSplit:
    """One candidate split of ``task`` on ``grid`` (``n_validation = 0``: cross-fitting)."""
    H = horizons_us(settings)[task]
    test = test_cutoffs(grid, H, fr, settings, span, int(step_days * US_PER_DAY))
    meta = dict(protocol=protocol, purged=purge and n_validation > 0, step_days=step_days, warmup_days=warmup_days)
    if not test:
        return TaskSplit([], [], [], **meta)
    clip = settings.label_windows == "clip_at_test"
    recorded_from = to_us(settings.outcomes_recorded_from) if settings.outcomes_recorded_from is not None else fr.start
    before = [t for t in grid if (t < test[0] if clip else t + H <= test[0]) and t >= recorded_from]
    validation = before[-n_validation:] if n_validation else []
    train = before[: len(before) - len(validation)]
    if purge and validation:  # no training label window reaches the validation cutoffs
        train = [t for t in train if t + H <= validation[0]]
    end = test[0] if clip and any(t + H > test[0] for t in before) else None
    return TaskSplit(train, validation, test, "", end, **meta)


def candidates(task: str, fr: Frame, settings: Settings) -> list[tuple[TaskSplit, int]]:
    """The task's candidate splits with the number of validation cutoffs each asks for, richest
    first (the rungs of ``settings.protocols``)."""
    out: list[tuple[TaskSplit, int]] = []
    V = settings.validation_cutoffs
    purge = settings.purge_validation
    if "temporal" in settings.protocols:
        grid = make_grid(fr, settings, settings.step_days, fr.default_warmup)
        out.append((split_for(task, grid, fr, settings, protocol="temporal", span=True, n_validation=V, purge=purge,
                              step_days=settings.step_days, warmup_days=fr.default_warmup), V))
    step, warmup = short_grid_params(fr, settings)
    grid = make_grid(fr, settings, step, warmup)
    kw = dict(span=False, step_days=step, warmup_days=warmup)
    for rung, rung_purge in (("short", purge), ("unpurged", False)):
        if rung not in settings.protocols or (rung == "unpurged" and not purge and "short" in settings.protocols):
            continue
        out += [(split_for(task, grid, fr, settings, protocol=rung, n_validation=v, purge=rung_purge, **kw), v) for v in range(V, 0, -1)]
    if "crossfit" in settings.protocols:
        out.append((split_for(task, grid, fr, settings, protocol="crossfit", n_validation=0, purge=False, **kw), 0))
    return out


# ---- the census: eligible customers and label counts per cutoff ---------------------------------------


def eligible_at(events: EncodedEvents, t_us: int, settings: Settings) -> np.ndarray:
    """Boolean per customer of ``events``: eligible at ``t`` (SPEC 4), from event times alone.

    Equals :func:`features.build.eligible` on the features at ``t`` (a test checks it): an event in
    (t-E, t], or any event at or before t when E is None."""
    lo = -np.inf if settings.eligibility_days is None else t_us - int(settings.eligibility_days * US_PER_DAY)
    out = np.zeros(events.n_customers, bool)
    out[events.cust[(events.ts <= t_us) & (events.ts > lo)]] = True
    return out


@dataclass
class Census:
    """Eligible customers and per-task label counts at cutoffs, computed once per (cutoff, window end)."""

    events: EncodedEvents
    settings: Settings
    _memo: dict = field(default_factory=dict)

    def at(self, t: int, end: int | None = None) -> dict:
        key = (t, end)
        if key not in self._memo:
            rows = np.flatnonzero(eligible_at(self.events, t, self.settings))
            ends = {task: end for task in TASKS} if end is not None else None
            lab = build_labels(self.events, t, self.settings, rows, ends)
            counts: dict = {"eligible": int(len(rows))}
            for task in TASKS:
                y = lab.task(task)
                if task == "stage":
                    counts[task] = np.bincount(y.astype(np.int64), minlength=6)
                else:
                    ok = ~np.isnan(y)
                    counts[task] = np.array([int(np.sum(y[ok] == 0)), int(np.sum(y[ok] == 1))])
            self._memo[key] = counts
        return self._memo[key]

    def part(self, task: str, split: TaskSplit, part: str) -> dict:
        """Rows, class counts and eligible customers per cutoff of one part of ``split``."""
        cutoffs = getattr(split, part)
        clipped = split.label_end_us if part != "test" else None
        counts = [self.at(t, clipped if clipped is not None and t < split.test[0] else None) for t in cutoffs]
        classes = np.sum([c[task] for c in counts], axis=0) if counts else np.zeros(6 if task == "stage" else 2, np.int64)
        eligible = [c["eligible"] for c in counts]
        return {"rows": int(classes.sum()), "classes": classes, "eligible": eligible}


def minority(task: str, classes: np.ndarray) -> tuple[int, str]:
    """(rows of the class the task is shortest of, its name for a message)."""
    if task == "stage":
        return int(classes.sum() - classes.max()) if classes.sum() else 0, "outside the most frequent stage"
    neg, pos = int(classes[0]), int(classes[1])
    return (pos, "positive") if pos <= neg else (neg, "negative")


# ---- choosing a rung and saying why ---------------------------------------------------------------------


def shortfall(task: str, split: TaskSplit, fr: Frame, census: Census, settings: Settings, n_validation: int = 1) -> str | None:
    """None when ``split`` is sufficient, else what is missing in numbers."""
    H = getattr(settings.horizons, task)
    if not split.test:
        return missing_test_message(H, split, fr, settings)
    if not split.train or not (split.validation or split.crossfit):
        return missing_history_message(task, H, split, fr, settings, n_validation)
    for part, need in (("train", settings.min_train_positives), ("test", settings.min_test_positives),
                       ("validation", settings.min_validation_positives)):
        if part == "validation" and split.crossfit:
            continue
        have, what = minority(task, census.part(task, split, part)["classes"])
        if have < need:
            return errors.needs_class_rows(need, what, "training" if part == "train" else part, have)
    return None


def missing_test_message(H: float, split: TaskSplit, fr: Frame, settings: Settings) -> str:
    if settings.test_from is not None:
        end = fr.anchor + int(H * US_PER_DAY)
        return errors.needs_events_after_test_from((end - fr.observed_until) / US_PER_DAY, from_us(fr.anchor).date().isoformat(), H,
                                                   from_us(end).date().isoformat(), from_us(fr.observed_until).date().isoformat())
    need = split.warmup_days + math.ceil(H / split.step_days - 1e-9) * split.step_days + H
    return errors.needs_longer_log(max(math.ceil(need - fr.span_days - 1e-9), 1), need, fr.span_days, split.warmup_days, H, fr.events_span())


def missing_history_message(task: str, H: float, split: TaskSplit, fr: Frame, settings: Settings, n_validation: int) -> str:
    """Days of history the split needs before its first test cutoff: the warm-up, one label window
    (whole steps; one step when windows are clipped at the test cutoff), and with a validation
    slice its cutoffs plus, when purged, a second label window before them."""
    test0, step = split.test[0], split.step_days
    history = (test0 - fr.start) / US_PER_DAY
    window = step if settings.label_windows == "clip_at_test" else math.ceil(H / step - 1e-9) * step
    extra = 0.0 if split.crossfit else ((n_validation - 1) * step + window if split.purged else n_validation * step)
    need = split.warmup_days + window + extra
    missing = max(math.ceil(need - history - 1e-9), 1)
    return errors.needs_history_before_test(missing, from_us(test0).date().isoformat(), split.warmup_days, H, need, history)


def facts(task: str, split: TaskSplit, fr: Frame, census: Census, settings: Settings) -> dict:
    """The sufficiency facts of ``split`` (report.json ``tasks.<task>.sufficiency``, ``journey check``)."""
    out: dict = {
        "protocol": split.protocol, "protocol_detail": split.describe(), "purged": split.purged,
        "log_days": round(fr.span_days, 2),
        "history_days": round((split.test[0] - fr.start) / US_PER_DAY, 2) if split.test else None,
        "first_test_cutoff": from_us(split.test[0]).isoformat() if split.test else None,
        "step_days": split.step_days, "warmup_days": round(split.warmup_days, 2),
        "cutoffs": {p: len(getattr(split, p)) for p in PARTS},
        "minimums": {"train": settings.min_train_positives, "validation": settings.min_validation_positives, "test": settings.min_test_positives},
        "eligible_per_cutoff": {}, "rows": {}, "minority": {},
    }
    if task != "stage":
        out["positives"] = {}
    if split.test and split.train:
        for p in PARTS:
            c = census.part(task, split, p)
            out["eligible_per_cutoff"][p] = [min(c["eligible"]), max(c["eligible"])] if c["eligible"] else None
            out["rows"][p] = c["rows"]
            out["minority"][p] = minority(task, c["classes"])[0]
            if task != "stage":
                out["positives"][p] = int(c["classes"][1])
    return out


def verdict(task: str, split: TaskSplit, f: dict, settings: Settings) -> tuple[str, str]:
    """("sufficient" | "weak", why) for a usable split."""
    weak = []
    if split.protocol != "temporal":
        weak.append(f"protocol '{split.protocol}' (the configured temporal split does not fit)")
    if not split.purged and not split.crossfit:
        weak.append(errors.leakage_note(getattr(settings.horizons, task)))
    if f["minority"].get("train", 0) < settings.weak_train_positives:
        weak.append(f"only {f['minority']['train']:,} training rows of the smaller class (fewer than {settings.weak_train_positives:,})")
    if f["minority"].get("test", 0) < settings.weak_test_positives:
        weak.append(f"only {f['minority']['test']:,} test rows of the smaller class (fewer than {settings.weak_test_positives:,}): wide intervals")
    return ("weak", "; ".join(weak)) if weak else ("sufficient", "")


def choose(task: str, fr: Frame, census: Census, settings: Settings) -> tuple[TaskSplit, dict, TaskSplit]:
    """The task's split (the first sufficient rung), its sufficiency facts with the verdict, and
    the split whose cutoffs the snapshots build for it: the chosen one, or for an insufficient
    task its first candidate (see ``CutoffPlan.built``)."""
    tried = []
    cands = candidates(task, fr, settings)
    for split, n_validation in cands:
        why = shortfall(task, split, fr, census, settings, n_validation)
        if why is None and split.protocol in ("short", "unpurged") and 1 < n_validation > len(split.train):
            why = f"more validation cutoffs ({n_validation}) than training cutoffs ({len(split.train)}): fewer validation cutoffs tried"
        if why is None:
            f = facts(task, split, fr, census, settings)
            f["verdict"], f["reason"] = verdict(task, split, f, settings)
            f["passed_over"] = tried
            return split, f, split
        tried.append({"protocol": split.protocol, "validation_cutoffs": n_validation, "reason": why})
    last = cands[-1][0] if cands else TaskSplit([], [], [])
    reason = tried[-1]["reason"] if tried else "no protocol allowed (settings.protocols is empty)"
    f = facts(task, last, fr, census, settings)
    f.update(verdict="insufficient", reason=reason, passed_over=tried[:-1])
    insufficient = TaskSplit([], [], last.test, reason, None, last.protocol, last.purged, last.step_days, last.warmup_days)
    return insufficient, f, cands[0][0] if cands else insufficient
