"""One typed settings object for the whole product (pydantic).

Precedence, lowest first: defaults here < the taxonomy preset's ``[settings]`` table (e.g. CDNOW is
purchase-only data) < a ``--config`` TOML file < command-line flags. A training run logs the
values it used. Nothing happens at import time.
"""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from journey_stage.core.errors import ConfigError

TASKS = ("stage", "churn", "advocacy", "conversion")


class Horizons(BaseModel):
    """Label horizons in days (SPEC section 4)."""

    model_config = ConfigDict(extra="forbid")
    stage: float = Field(14, gt=0, description="H_stage: days after t that reveal the stage")
    churn: float = Field(90, gt=0, description="H_churn: churn = no activity in (t, t+H]")
    advocacy: float = Field(30, gt=0, description="H_adv: an advocacy event in (t, t+H]")
    conversion: float = Field(14, gt=0, description="H_conv: a conversion event in (t, t+H]")


class Settings(BaseModel):
    """Every window, horizon and training knob. All durations are in days unless named otherwise."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # taxonomy
    taxonomy: str = Field("five_stage", description="preset name or path to a taxonomy TOML file")
    unknown_stage: str | None = Field(None, description="map unknown event types to this stage instead of failing")

    # stage rules and eligibility (SPEC 4)
    lookback_days: float = Field(30, gt=0, description="W: look-back of the observed stage")
    advocacy_lookback_days: float = Field(90, gt=0, description="A: advocacy look-back of the observed stage")
    eligibility_days: float | None = Field(90, description="E: scored if an event in (t-E, t]; None = every customer seen")
    horizons: Horizons = Field(default_factory=Horizons)
    churn_activity: Literal["any", "conversions"] = Field("any", description="what counts as activity for churn")
    conversion_scope: Literal["all", "unconverted"] = Field(
        "all", description="score conversion for all eligible customers, or only those not yet converted"
    )

    # features (SPEC 5)
    feature_windows_days: list[float] = Field(default_factory=lambda: [1, 7, 30, 90])
    session_gap_minutes: float = Field(30, gt=0)
    last_k: int = Field(5, ge=1, le=20, description="length of the last-k stage / event-type sequence features")

    # snapshots and split
    step_days: float = Field(7, gt=0, description="days between training cutoffs")
    warmup_days: float | None = Field(None, description="history before the first cutoff; None = adapt to the data")
    test_from: datetime | None = Field(None, description="first test cutoff; None = the latest cutoff(s)")
    test_cutoffs: int = Field(1, ge=1, description="number of latest cutoffs used as test set when test_from is None")
    validation_cutoffs: int = Field(4, ge=1, description="latest cutoffs before the test whose windows end by it: early stopping and calibration")
    test_span_days: float = Field(
        28, ge=0, description="without test_from: test on every observed cutoff in the last N days (at least test_cutoffs)"
    )
    purge_validation: bool = Field(
        True,
        description="training label windows end by the first validation cutoff, so early stopping, calibration and "
        "choices made on the validation slice never see labels overlapping it (costs one horizon of training cutoffs)",
    )
    label_windows: Literal["complete", "clip_at_test"] = Field(
        "complete",
        description="training/validation label windows: 'complete' = only cutoffs whose whole window ends by the first "
        "test cutoff; 'clip_at_test' = cutoffs up to the first test cutoff, windows cut at it (never read past it)",
    )
    outcomes_recorded_from: datetime | None = Field(
        None, description="the data records outcomes (e.g. won deals) from this date on: earlier cutoffs do not train"
    )

    # protocol ladder and data sufficiency (SPEC 4 and 6; README "Protocols, sufficiency and the gate")
    protocols: list[Literal["temporal", "short", "unpurged", "crossfit"]] = Field(
        ["temporal", "short", "unpurged", "crossfit"],
        min_length=1,
        description="the protocol ladder, richest first; each task uses the first rung whose split has enough rows of "
        "each class (the minimums below): 'temporal' = the split configured above (test span, validation cutoffs, purge); "
        "'short' = one test cutoff (or the --test-from ones), fewer validation cutoffs, step and warm-up shrunk to the "
        "log; 'unpurged' = as 'short' without the purge (leakage risk: training and validation label windows overlap); "
        "'crossfit' = no validation slice: early stopping and calibration cross-fitted over customer folds of the "
        "training cutoffs",
    )
    min_train_positives: int = Field(
        30, ge=1, description="a task trains only when its training rows hold at least this many rows of each class "
        "(stage: rows outside the most frequent stage)"
    )
    min_validation_positives: int = Field(
        10, ge=1, description="a validation slice with fewer rows of either class (stage: outside the most frequent "
        "stage) is not used: the ladder moves to the next rung"
    )
    min_test_positives: int = Field(
        1, ge=1, description="the test rows need at least this many rows of each class (stage: outside the most frequent "
        "stage); fewer than weak_test_positives make the verdict 'weak'"
    )
    weak_train_positives: int = Field(200, ge=1, description="verdict 'weak' (not 'sufficient') below this many training rows of the smaller class")
    weak_test_positives: int = Field(50, ge=1, description="verdict 'weak' below this many test rows of the smaller class (wide intervals)")
    crossfit_folds: int = Field(3, ge=2, le=10, description="customer folds of the 'crossfit' protocol")
    serve_baseline: bool = Field(
        True, description="when a task's model does not beat its best rule baseline on the validation slice (or the "
        "cross-fitted folds), the predictor serves that rule, calibrated, for the task (false: always the model)"
    )

    # promotion gate (journey promote)
    gate_confidence: float = Field(
        0.95, gt=0.5, lt=1, description="confidence of the paired-bootstrap interval of a primary metric's difference "
        "(challenger - champion, or challenger - best rule baseline); 'significantly worse' = the whole interval "
        "lies below -gate_tolerance"
    )
    gate_tolerance: float = Field(0.0, ge=0, description="a loss this small is never 'significantly worse' (metric units)")
    gate_bootstrap_rounds: int = Field(500, ge=0, description="paired bootstrap resamples over test customers for the gate (0 = compare point values)")
    gate_min_class_rows: int = Field(
        10, ge=1, description="a comparison on test rows with fewer rows of either class (stage: outside the most frequent "
        "stage) is inconclusive: a bootstrap of so few cannot show a significant loss, and it never blocks promotion"
    )

    # models
    calibration: Literal["isotonic", "sigmoid"] = Field(
        "sigmoid",
        description="binary tasks: Platt scaling (sigmoid, monotone: never changes the ranking) or isotonic "
        "regression (steps: ties customers, can cost ROC-AUC and lift); multiclass always uses sigmoid",
    )
    booster_weights: list[float] = Field(
        [1.0, 0.75, 0.5, 0.25],
        min_length=1,
        description="binary tasks: candidate weights of the LightGBM margin in a blend with a logistic regression "
        "on the same features (margin = w * LightGBM + (1 - w) * linear); the weight with the best validation "
        "ROC-AUC is kept, ties go to the larger w; [1.0] = LightGBM alone",
    )
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(100, ge=1)
    max_train_rows: int = Field(100_000, ge=1000, description="training rows are sampled down to this many")
    eval_customers_cap: int | None = Field(
        200_000, ge=1000,
        description="a log with more customers trains and evaluates on this many, sampled whole (every event of a "
        "customer or none) by a stable hash of customer_id (training/sampling.py); validation and test slices, and so "
        "calibration, early stopping and the bootstrap, follow the cap, not the log; a Parquet log is read for the "
        "sampled customers only; None = every customer (report.json: 'sample' and tasks.<task>.sampled)",
    )
    bootstrap_rounds: int = Field(200, ge=0, description="bootstrap resamples over customers for 95% intervals")
    seed: int = 0
    n_jobs: int = Field(1, ge=1, description="LightGBM threads (1 avoids OpenMP oversubscription on shared machines)")

    # registry
    model_name: str = "journey-stage"

    @field_validator("eligibility_days", "eval_customers_cap", mode="before")
    @classmethod
    def _none_word(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "none":
            return None
        return v

    @field_validator("booster_weights")
    @classmethod
    def _weights_in_unit_interval(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < w <= 1.0 for w in v):
            raise ValueError("every booster weight must lie in (0, 1] (LightGBM always takes part)")
        return v

    def with_overrides(self, overrides: dict[str, Any]) -> "Settings":
        return build_settings(self.model_dump(), overrides)

    def loggable(self) -> dict[str, Any]:
        """Flat key -> value for MLflow params."""
        out: dict[str, Any] = {}
        for k, v in self.model_dump(mode="json").items():
            if isinstance(v, dict):
                out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                out[k] = v
        return out


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        elif v is not None or k in ("eligibility_days", "test_from", "warmup_days", "unknown_stage", "outcomes_recorded_from", "eval_customers_cap"):
            out[k] = v
    return out


def build_settings(*layers: dict[str, Any] | None, source: str = "settings") -> Settings:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = _deep_merge(merged, layer)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{source}: setting '{loc}': {first['msg']} (got {first.get('input')!r}).",
            "see the configuration reference in README.md for names and allowed values.",
        ) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found.", "pass an existing TOML file to --config.")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}.", "fix the TOML syntax.") from None
    return data


def parse_horizon_flags(flags: list[str]) -> dict[str, float]:
    """``["churn=91", "stage=7"]`` -> ``{"churn": 91.0, "stage": 7.0}``."""
    out: dict[str, float] = {}
    for flag in flags or []:
        task, sep, days = flag.partition("=")
        task = task.strip()
        if not sep or task not in TASKS:
            raise ConfigError(f"--horizon {flag!r}: expected TASK=DAYS with TASK one of {list(TASKS)}.", "e.g. --horizon churn=91")
        try:
            out[task] = float(days)
        except ValueError:
            raise ConfigError(f"--horizon {flag!r}: DAYS must be a number, got {days!r}.", "e.g. --horizon churn=91") from None
    return out
