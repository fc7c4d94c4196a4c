"""Synthetic social-media customer journeys (SPEC section 9): the public entry point.

A seeded, deterministic and fully vectorised simulator of touchpoint logs. Every customer carries
a *latent* journey stage that moves non-linearly over time (forward through the funnel, back to
earlier stages, stalling, dropping out and sometimes returning), emits sessions of touchpoints
whose types and channels depend on that stage, converts, comes back for support and repeat
purchases, advocates (reviews, shares, UGC, referrals that bring in new customers) and churns.

The simulation is an episode-by-episode ("per transition") process over all customers at once:
each loop iteration draws one stage episode (a few sessions of a few events each) for every
customer that is still active, then draws the next latent stage from a trait-dependent transition
matrix. All draws come from one ``numpy.random.Generator`` seeded with ``seed``, so
``(customers, seed, start, days, params)`` fully determine the output.

Public API: :func:`generate_events`, :func:`generate_journeys`, :class:`GeneratorParams`,
:class:`Journeys` and the taxonomy constants (:data:`STAGES`, :data:`STAGE_EVENTS`,
:data:`EVENT_TYPES`, :data:`EVENT_STAGE`, :data:`CHANNELS`, :data:`CONVERSION_EVENTS`).
Every default parameter, what it means and where it comes from is documented on the
field (``dataclasses.fields(GeneratorParams)[i].metadata``) and in ``docs/generator.md``.

The implementation is split by responsibility (all under ``synthetic/``):

- ``vocabulary.py``: stages and event types (read from the ``five_stage`` taxonomy), channels,
  acquisition routes, per-event channel rules, campaign events and in-session order;
- ``params.py``: :class:`GeneratorParams` and :func:`params_table`; ``checks.py`` validates them;
- ``tables.py``, ``clock.py``, ``arrays.py``: numeric lookup tables, the activity clock and
  calendar months, numpy helpers;
- ``population.py``, ``simulator.py``, ``episode.py``, ``touchpoints.py``: the simulation
  (customers and traits; waves and episodes; sessions and event types; timestamps, channels,
  values and campaigns);
- ``output.py``: :class:`Journeys` and the assembly of the output frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from journey_stage.synthetic.output import Journeys, assemble
from journey_stage.synthetic.params import GeneratorParams, params_table
from journey_stage.synthetic.simulator import Simulator
# CAMPAIGN_EVENTS is importable from here (the tests use it) but, as before, not in __all__
from journey_stage.synthetic.vocabulary import CAMPAIGN_EVENTS as CAMPAIGN_EVENTS
from journey_stage.synthetic.vocabulary import (
    ACQUISITIONS,
    CHANNELS,
    CONVERSION_EVENTS,
    EVENT_COLUMNS,
    EVENT_STAGE,
    EVENT_TYPES,
    FUNNEL_STAGES,
    SOCIAL_PLATFORMS,
    STAGE_EVENTS,
    STAGES,
)

__all__ = [
    "STAGES",
    "FUNNEL_STAGES",
    "STAGE_EVENTS",
    "EVENT_TYPES",
    "EVENT_STAGE",
    "CONVERSION_EVENTS",
    "CHANNELS",
    "SOCIAL_PLATFORMS",
    "ACQUISITIONS",
    "EVENT_COLUMNS",
    "GeneratorParams",
    "Journeys",
    "generate_events",
    "generate_journeys",
    "params_table",
]

def _parse_start(start: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(start)
    if ts is pd.NaT:
        raise ValueError(f"start: not a timestamp: {start!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("s")


def _check_arguments(customers: int, seed: int, days: int, params: GeneratorParams | None) -> GeneratorParams:
    """Validate the arguments (ValueError/TypeError naming the argument); the params to use."""
    if isinstance(customers, bool) or not isinstance(customers, (int, np.integer)) or customers < 0:
        raise ValueError(f"customers: expected a non-negative integer, got {customers!r}")
    if not (isinstance(days, (int, float, np.integer, np.floating)) and days > 0):
        raise ValueError(f"days: expected a positive number, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    p = params if params is not None else GeneratorParams()
    if not isinstance(p, GeneratorParams):
        raise TypeError("params: expected a GeneratorParams")
    return p


def _run(customers: int, seed: int, start: str, days: int, params: GeneratorParams | None,
         truth: bool) -> Journeys | pd.DataFrame:
    p = _check_arguments(customers, seed, days, params)
    t0 = _parse_start(start)
    sim = Simulator(int(customers), int(seed), t0, float(days), p)
    sim.run()
    return assemble(sim, p, truth)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_events(
    customers: int,
    seed: int = 0,
    start: str = "2025-01-01",
    days: int = 365,
    params: GeneratorParams | None = None,
) -> pd.DataFrame:
    """Synthetic touchpoint log of ``customers`` customers over ``days`` days from ``start``.

    One row per touchpoint, columns (in order) ``customer_id`` (str, "c0000001"...),
    ``timestamp`` (datetime64[us, UTC], seconds resolution), ``event_type`` (str, the
    ``five_stage`` taxonomy), ``channel`` (str), ``value`` (float64: order value on purchases,
    NaN otherwise), ``campaign`` (str or null) and ``true_stage`` (str: the latent stage at the
    time of the event; models must not read it). Sorted by (customer_id, timestamp). Customer ids
    are numbered in order of first touch. Exactly ``customers`` customers appear, each with at
    least one event; some of them are referral-acquired. Deterministic in all arguments.
    """
    out = _run(customers, seed, start, days, params, truth=False)
    assert isinstance(out, pd.DataFrame)
    return out


def generate_journeys(
    customers: int,
    seed: int = 0,
    start: str = "2025-01-01",
    days: int = 365,
    params: GeneratorParams | None = None,
) -> Journeys:
    """Like :func:`generate_events` (same ``events`` frame for the same arguments) plus the
    latent stage path (``stages``, including lapsed spells) and the per-customer traits and
    acquisition (``customers``)."""
    out = _run(customers, seed, start, days, params, truth=True)
    assert isinstance(out, Journeys)
    return out
