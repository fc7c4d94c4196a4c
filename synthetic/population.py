"""The simulated customers: acquisition, arrival and latent traits, one array entry per customer.

Customers get *global indices* 0, 1, ... in order of allocation (organic customers first, then
each wave of referred friends); the output renumbers them in order of first touch.
"""

from __future__ import annotations

import math

import numpy as np

from journey_stage.synthetic.arrays import categorical
from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.tables import Tables
from journey_stage.synthetic.vocabulary import ACQUISITIONS


class Population:
    """Per-customer data of ``n`` customers, indexed by global index, filled by :meth:`add`."""

    def __init__(self, n: int) -> None:
        self.acq = np.zeros(n, np.int8)  # acquisition route (index into ACQUISITIONS)
        self.referred_by = np.full(n, -1, np.int64)  # global index of the referrer, -1 if none
        self.arrival_sec = np.zeros(n, np.int64)  # first touch, wall seconds since start
        self.act = np.ones(n)  # activity rate (gamma, mean 1)
        self.z = np.zeros(n)  # purchase-intent trait
        self.loy = np.zeros(n)  # loyalty trait
        self.adv = np.zeros(n)  # advocacy-propensity trait
        self.spend = np.zeros(n)  # typical order value
        self.pref = np.zeros(n, np.int8)  # preferred social platform (index into SOCIAL_PLATFORMS)
        self.drop = np.zeros(n)  # dropout random effect (log-odds)
        self.next_id = 0

    def add(self, rng: np.random.Generator, p: GeneratorParams, tb: Tables, k: int,
            arrival_days: np.ndarray, acq: np.ndarray, referred_by: np.ndarray | None) -> np.ndarray:
        """Allocate k customers arriving at wall times arrival_days (sorted) and draw traits."""
        ix = np.arange(self.next_id, self.next_id + k)
        self.next_id += k
        self.acq[ix] = acq
        if referred_by is not None:
            self.referred_by[ix] = referred_by
        self.arrival_sec[ix] = np.floor(arrival_days * 86400).astype(np.int64)
        self.act[ix] = rng.gamma(p.activity_shape, 1.0 / p.activity_shape, k)
        e = rng.standard_normal((3, k))
        z = e[0]
        r1, r2 = p.intent_loyalty_corr, p.loyalty_advocacy_corr
        loy = r1 * z + math.sqrt(1 - r1 * r1) * e[1]
        adv = r2 * loy + math.sqrt(1 - r2 * r2) * e[2]
        ref = acq == ACQUISITIONS.index("referral")
        self.z[ix] = z + p.referred_intent_lift * ref
        self.loy[ix] = loy + p.referred_loyalty_lift * ref
        self.adv[ix] = adv
        self.spend[ix] = p.order_value_median * np.exp(p.order_value_customer_sigma * rng.standard_normal(k))
        self.pref[ix] = categorical(rng, tb.platform_cdf, k)
        self.drop[ix] = p.dropout_sd * rng.standard_normal(k)
        return ix
