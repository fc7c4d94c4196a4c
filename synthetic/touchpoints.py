"""The attributes of an episode's events: timestamps, channels, order values and campaigns.

Each function draws one attribute for all events of the episode at once; the simulator calls
them in a fixed order (times, session sources, channels, values, campaigns), which fixes the
order of random draws.
"""

from __future__ import annotations

import numpy as np

from journey_stage.synthetic.arrays import categorical, seg_cumsum, seg_starts
from journey_stage.synthetic.clock import Clock, Months
from journey_stage.synthetic.episode import Cohort, Sessions
from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.population import Population
from journey_stage.synthetic.tables import Tables
from journey_stage.synthetic.vocabulary import (
    CHANNEL_CODE,
    EVENT_CODE,
    RULE_AD,
    RULE_FIXED,
    RULE_SOCIAL,
    SOCIAL_CODE,
)


def event_times(rng: np.random.Generator, p: GeneratorParams, clock: Clock, ss: Sessions,
                e_sess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wall seconds of each event, first event of each session, wall days of each session).

    Events of a session are exponential gaps (event_gap_minutes) after the session's start.
    """
    cnt = np.bincount(e_sess, minlength=ss.count)
    e_start = seg_starts(cnt)
    dt = rng.exponential(p.event_gap_minutes * 60.0, len(e_sess))
    dt[e_start] = 0.0
    off = seg_cumsum(dt, e_start, e_sess)
    sess_t = clock.to_wall(ss.sess_u)  # wall days
    t_sec = np.floor(sess_t[e_sess] * 86400.0 + off).astype(np.int64)
    return t_sec, e_start, sess_t


def resolve_social(rng: np.random.Generator, p: GeneratorParams, tb: Tables, pref: np.ndarray,
                   ch: np.ndarray, cust_g: np.ndarray) -> np.ndarray:
    """Replace the SOCIAL_CODE pseudo code by the customer's platform (or another one)."""
    m = ch == SOCIAL_CODE
    k = int(m.sum())
    if k:
        own = rng.random(k) < p.preferred_platform_prob
        other = categorical(rng, tb.platform_cdf, k).astype(np.int8)
        ch[m] = np.where(own, pref[cust_g[m]], other)
    return ch


def session_sources(rng: np.random.Generator, p: GeneratorParams, tb: Tables, pop: Population,
                    c: Cohort, ss: Sessions) -> np.ndarray:
    """Traffic source (channel code) of each session, by latent stage; one platform per session.

    The first session of a journey comes from the acquisition channel.
    """
    src = np.empty(ss.count, np.int8)
    for st in range(5):
        mk = ss.sess_stage == st
        k = int(mk.sum())
        if k:
            src[mk] = tb.src_codes[categorical(rng, tb.src_cdf[st], k)]
    fsx = ss.c_start[c.first]
    src[fsx] = tb.acq_chan[pop.acq[c.g[c.first]]]
    return resolve_social(rng, p, tb, pop.pref, src, c.g[ss.own])


def event_channels(rng: np.random.Generator, p: GeneratorParams, tb: Tables, pref: np.ndarray,
                   src: np.ndarray, e_sess: np.ndarray, e_type: np.ndarray, e_fch: np.ndarray,
                   e_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(channel code of each event, positions of the purchase events).

    The event type's channel rule decides (session source, social platform, ad channel or a
    fixed channel); a forced channel (``e_fch`` != -1) overrides it; some purchases are in store.
    """
    rule = tb.rule[e_type]
    chan = np.where(rule == RULE_FIXED, tb.fixed[e_type], src[e_sess])
    adm = rule == RULE_AD
    chan[adm] = tb.ad_codes[categorical(rng, tb.ad_cdf, int(adm.sum()))]
    chan[rule == RULE_SOCIAL] = SOCIAL_CODE
    fo = (e_fch != -1) & (e_fch != SOCIAL_CODE)
    chan[fo] = e_fch[fo]
    fso = e_fch == SOCIAL_CODE  # social acquisition: the session's platform
    chan[fso] = src[e_sess[fso]]
    chan = resolve_social(rng, p, tb, pref, chan, e_g)
    pur = np.flatnonzero(e_type == EVENT_CODE["purchase"])
    store = pur[rng.random(len(pur)) < p.store_purchase_share]
    chan[store] = CHANNEL_CODE["store"]
    return chan, pur


def order_values(rng: np.random.Generator, p: GeneratorParams, spend: np.ndarray, e_g: np.ndarray,
                 pur: np.ndarray) -> np.ndarray:
    """Order value on purchase events (log-normal around the customer's spend), NaN elsewhere."""
    value = np.full(len(e_g), np.nan)
    if len(pur):
        v = spend[e_g[pur]] * np.exp(p.order_value_order_sigma * rng.standard_normal(len(pur)))
        value[pur] = np.round(v, 2)
    return value


def campaign_codes(rng: np.random.Generator, p: GeneratorParams, tb: Tables, months: Months,
                   e_type: np.ndarray, chan: np.ndarray, t_sec: np.ndarray) -> np.ndarray:
    """Campaign code (channel * months + month) * K + k of campaign events, -1 elsewhere."""
    camp = np.full(len(e_type), -1, np.int32)
    cm = np.flatnonzero(tb.campaign_type[e_type])
    if len(cm):
        month = months.index(t_sec[cm])
        K = p.campaigns_per_channel_month
        camp[cm] = (chan[cm].astype(np.int32) * months.n_months + month) * K + rng.integers(0, K, len(cm))
    return camp
