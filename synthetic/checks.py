"""Validation of a :class:`~journey_stage.synthetic.params.GeneratorParams` (run on construction).

:func:`check_params` raises ``ValueError`` naming the first bad field. The checks run in a fixed
order (mixes, per-stage values, per-stage tables, transitions, event pairs, ranges, time profile),
so a value with several problems always reports the same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from journey_stage.synthetic.vocabulary import (
    ACQUISITIONS,
    CHANNELS,
    EVENT_CODE,
    EVENT_STAGE,
    EVENT_TYPES,
    FUNNEL_STAGES,
    SOCIAL_PLATFORMS,
    STAGE_EVENTS,
    STAGES,
)

#: Latent stages a funnel stage may move to at the end of an episode.
_ALLOWED_NEXT: dict[str, tuple[str, ...]] = {
    "awareness": ("awareness", "consideration", "decision", "lapsed"),
    "consideration": ("awareness", "consideration", "decision", "lapsed"),
    "decision": ("awareness", "consideration", "decision", "retention", "lapsed"),
    "retention": ("retention", "advocacy", "lapsed"),
    "advocacy": ("retention", "advocacy", "lapsed"),
}

#: Fields that are probabilities (``*_corr`` fields are correlations in [-1, 1]).
_PROBABILITIES: tuple[str, ...] = (
    "referral_conversion_prob", "referral_share_cap", "intent_loyalty_corr",
    "loyalty_advocacy_corr", "return_to_awareness_prob", "abandon_add_to_cart_prob",
    "abandon_checkout_prob", "repeat_purchase_prob", "store_purchase_share",
    "preferred_platform_prob",
)


def check_params(p: Any) -> None:
    """Raise ``ValueError`` if the GeneratorParams ``p`` is inconsistent or out of range."""
    _check_channel_mixes(p)
    _check_stage_values(p)
    _check_stage_tables(p)
    _check_transitions(p)
    _check_event_pairs(p)
    _check_ranges(p)
    _check_time_profile(p)


def _check_mix(name: str, pairs: Any, allowed: tuple[str, ...]) -> None:
    """``pairs`` = ``((name, weight), ...)``: known names, weights >= 0 with a positive sum."""
    names = [k for k, _ in pairs]
    bad = [k for k in names if k not in allowed]
    if bad:
        raise ValueError(f"GeneratorParams.{name}: unknown names {bad}; allowed {allowed}")
    vals = np.array([v for _, v in pairs], dtype=float)
    if len(vals) == 0 or (vals < 0).any() or vals.sum() <= 0 or not np.isfinite(vals).all():
        raise ValueError(f"GeneratorParams.{name}: weights must be >= 0 with a positive sum")


def _check_channel_mixes(p: Any) -> None:
    _check_mix("acquisition_mix", p.acquisition_mix, ACQUISITIONS[:-1])
    _check_mix("advocacy_mix", p.advocacy_mix, STAGE_EVENTS["advocacy"])
    _check_mix("platform_weights", p.platform_weights, SOCIAL_PLATFORMS)
    _check_mix("ad_channel_mix", p.ad_channel_mix, ("social", "display", "search"))


def _check_stage_values(p: Any) -> None:
    """One non-negative number per funnel stage; at least one session per episode."""
    for name in ("sessions_per_episode", "session_gap_days", "extra_events_per_session"):
        pairs = dict(getattr(p, name))
        if set(pairs) != set(FUNNEL_STAGES):
            raise ValueError(f"GeneratorParams.{name}: needs one value per stage {FUNNEL_STAGES}")
        if any(v < 0 for v in pairs.values()):
            raise ValueError(f"GeneratorParams.{name}: values must be >= 0")
    if any(v < 1 for v in dict(p.sessions_per_episode).values()):
        raise ValueError("GeneratorParams.sessions_per_episode: means must be >= 1")


def _check_stage_tables(p: Any) -> None:
    """One event-type mix and one session-source mix per funnel stage."""
    for stage, pairs in p.event_weights:
        _check_mix(f"event_weights[{stage}]", pairs, EVENT_TYPES)
        if any(k in ("purchase", "onboarding") and v > 0 for k, v in pairs):
            raise ValueError("GeneratorParams.event_weights: purchase/onboarding are forced, not drawn")
    if {s for s, _ in p.event_weights} != set(FUNNEL_STAGES):
        raise ValueError("GeneratorParams.event_weights: needs one mix per funnel stage")
    sources = ("social",) + CHANNELS[4:]
    for stage, pairs in p.session_sources:
        _check_mix(f"session_sources[{stage}]", pairs, sources)
    if {s for s, _ in p.session_sources} != set(FUNNEL_STAGES):
        raise ValueError("GeneratorParams.session_sources: needs one mix per funnel stage")


def _check_transitions(p: Any) -> None:
    """One transition row per funnel stage, to allowed stages; effects on known transitions."""
    if {s for s, _ in p.transitions} != set(FUNNEL_STAGES):
        raise ValueError("GeneratorParams.transitions: needs one row per funnel stage")
    for stage, pairs in p.transitions:
        _check_mix(f"transitions[{stage}]", pairs, _ALLOWED_NEXT[stage])
    for name in ("intent_effects", "loyalty_effects", "advocacy_effects"):
        for frm, to, _ in getattr(p, name):
            if frm not in FUNNEL_STAGES or to not in STAGES:
                raise ValueError(f"GeneratorParams.{name}: unknown transition {frm}->{to}")


def _check_event_pairs(p: Any) -> None:
    """A once-only event is replaced by a known event type of the same stage."""
    for a, b in p.once_only_events:
        if a not in EVENT_CODE or b not in EVENT_CODE or EVENT_STAGE[a] != EVENT_STAGE[b]:
            raise ValueError(f"GeneratorParams.once_only_events: bad pair {a}->{b}")


def _check_ranges(p: Any) -> None:
    """Probabilities in [0, 1], correlations in [-1, 1], positive scales and counts."""
    for name in _PROBABILITIES:
        v = getattr(p, name)
        lo = -1.0 if name.endswith("_corr") else 0.0
        if not (lo <= v <= 1.0):
            raise ValueError(f"GeneratorParams.{name}: must be in [{lo}, 1], got {v}")
    for _, v in p.lapse_return_prob:
        if not 0 <= v <= 1:
            raise ValueError("GeneratorParams.lapse_return_prob: must be in [0, 1]")
    if p.activity_shape <= 0 or p.order_value_median <= 0:
        raise ValueError("GeneratorParams: activity_shape and order_value_median must be > 0")
    if p.campaigns_per_channel_month < 1:
        raise ValueError("GeneratorParams.campaigns_per_channel_month: must be >= 1")


def _check_time_profile(p: Any) -> None:
    """24 hour, 7 weekday and 12 month weights, all positive."""
    if len(p.hour_weights) != 24 or len(p.weekday_weights) != 7 or len(p.month_weights) != 12:
        raise ValueError("GeneratorParams: need 24 hour, 7 weekday and 12 month weights")
    for name in ("hour_weights", "weekday_weights", "month_weights"):
        if min(getattr(p, name)) <= 0:
            raise ValueError(f"GeneratorParams.{name}: weights must be > 0")
