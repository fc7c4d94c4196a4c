"""One stage episode of every active customer: its sessions and the event types they contain.

An episode is one visit to a latent stage: a geometric number of sessions, each with a Poisson
number of randomly drawn event types, plus the events the funnel logic forces (the first touch,
purchases and abandoned carts, onboarding, win-back, repeat purchases, advocacy). The functions
here draw them, for all active customers at once, in a fixed order of random draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from journey_stage.synthetic.arrays import categorical, logit, seg_cumsum, seg_starts, sigmoid
from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.population import Population
from journey_stage.synthetic.tables import Tables
from journey_stage.synthetic.vocabulary import (
    EVENT_CODE,
    KEY_CHECKOUT,
    KEY_JITTER,
    KEY_PURCHASE,
    KEY_SPAN,
    STAGE_D,
    STAGE_R,
    STAGE_V,
)


@dataclass
class Cohort:
    """The customers active in this episode (aligned arrays of length ``m``)."""

    act: np.ndarray  # positions in the wave
    g: np.ndarray  # global customer indices
    s: np.ndarray  # latent stage code of the episode (int64)
    first: np.ndarray  # the episode is the first of the customer's journey
    conv: np.ndarray  # the customer has bought before this episode
    idle: np.ndarray  # consecutive episodes without progress (interest fatigue)
    nxt: np.ndarray  # latent stage after the episode (int8)
    slow: np.ndarray  # gap multiplier from interest fatigue

    @property
    def m(self) -> int:
        return len(self.act)


@dataclass
class Sessions:
    """The sessions of one episode, grouped by customer: customer i owns c_start[i]..last_sess[i]."""

    n_sess: np.ndarray  # number of sessions per customer
    c_start: np.ndarray  # first session of each customer
    own: np.ndarray  # cohort position of each session's customer
    sess_u: np.ndarray  # activity time of each session
    sess_stage: np.ndarray  # latent stage code of each session
    last_sess: np.ndarray  # last session of each customer
    first_ever: np.ndarray  # the session is the first of a customer's journey

    @property
    def count(self) -> int:
        return len(self.own)


def draw_sessions(rng: np.random.Generator, p: GeneratorParams, tb: Tables, activity: np.ndarray,
                  u_act: np.ndarray, c: Cohort) -> Sessions:
    """Session counts and gamma gaps (activity time from ``u_act``, each customer's episode start)."""
    s = c.s
    n_sess = rng.geometric(1.0 / tb.sess_mean[s])
    S = int(n_sess.sum())
    c_start = seg_starts(n_sess)
    own = np.repeat(np.arange(c.m), n_sess)
    k_gap = p.session_gap_shape
    gap = rng.gamma(k_gap, 1.0 / k_gap, S) * (tb.sess_gap[s] * c.slow / activity[c.g])[own]
    gap[c_start] = 0.0
    sess_u = u_act[own] + seg_cumsum(gap, c_start, own)
    first_ever = np.zeros(S, bool)
    first_ever[c_start[c.first]] = True
    return Sessions(n_sess, c_start, own, sess_u, s[own], c_start + n_sess - 1, first_ever)


def draw_random_events(rng: np.random.Generator, tb: Tables,
                       ss: Sessions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session, event type, in-session sort key) of the randomly drawn events.

    A session has Poisson(extra) events plus one, except the first session of a journey, whose
    first event is the forced first touch.
    """
    n_rand = rng.poisson(tb.extra[ss.sess_stage]) + (~ss.first_ever)
    E0 = int(n_rand.sum())
    r_sess = np.repeat(np.arange(ss.count), n_rand)
    r_stage = ss.sess_stage[r_sess]
    r_type = np.empty(E0, np.int8)
    for st in range(5):
        mk = r_stage == st
        k = int(mk.sum())
        if k:
            r_type[mk] = categorical(rng, tb.type_cdf[st], k)
    r_key = tb.order_key[r_type] + 1 + rng.integers(0, KEY_JITTER, E0)
    return r_sess, r_type, r_key


class ForcedEvents:
    """Events forced by the funnel logic, collected in chunks, then merged with the random ones."""

    def __init__(self) -> None:
        self.sess: list[np.ndarray] = []
        self.type: list[np.ndarray] = []
        self.key: list[np.ndarray] = []
        self.chan: list[np.ndarray] = []  # channel code, -1 = by the event type's channel rule

    def add(self, sess: np.ndarray, etype: np.ndarray | int, key: np.ndarray | int,
            chan: np.ndarray | int = -1) -> None:
        k = len(sess)
        if k == 0:
            return
        self.sess.append(sess)
        self.type.append(np.broadcast_to(np.asarray(etype, np.int8), (k,)))
        self.key.append(np.broadcast_to(np.asarray(key, np.int64), (k,)))
        self.chan.append(np.broadcast_to(np.asarray(chan, np.int8), (k,)))

    def merge(self, r_sess: np.ndarray, r_type: np.ndarray,
              r_key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(session, event type, forced channel) of all events, sorted by session then key."""
        E0 = len(r_sess)
        if self.sess:
            e_sess = np.concatenate([r_sess] + self.sess)
            e_type = np.concatenate([r_type] + self.type)
            e_key = np.concatenate([r_key] + self.key)
            e_fch = np.concatenate([np.full(E0, -1, np.int8)] + self.chan)
        else:
            e_sess, e_type, e_key, e_fch = r_sess, r_type, r_key, np.full(E0, -1, np.int8)
        order = np.argsort(e_sess * KEY_SPAN + e_key, kind="stable")
        return e_sess[order], e_type[order], e_fch[order]


def force_funnel_events(rng: np.random.Generator, p: GeneratorParams, tb: Tables, pop: Population,
                        c: Cohort, ss: Sessions, onboard: np.ndarray,
                        winback: np.ndarray) -> tuple[ForcedEvents, np.ndarray]:
    """The forced events of the episode, and which customers made a repeat purchase in it."""
    f = ForcedEvents()
    _force_first_touch(f, tb, pop, c, ss)
    _force_decision(f, rng, p, tb, c, ss)
    repeat_buyer = _force_retention(f, rng, p, tb, pop, c, ss, onboard, winback)
    _force_advocacy(f, rng, tb, c, ss)
    return f, repeat_buyer


def _force_first_touch(f: ForcedEvents, tb: Tables, pop: Population, c: Cohort, ss: Sessions) -> None:
    """Acquisition: the first event of a customer's journey, on the acquisition channel."""
    fs = ss.c_start[c.first]
    a = pop.acq[c.g[c.first]]
    f.add(fs, tb.acq_type[a], 0, tb.acq_chan[a])


def _force_decision(f: ForcedEvents, rng: np.random.Generator, p: GeneratorParams, tb: Tables,
                    c: Cohort, ss: Sessions) -> None:
    """Decision episodes end with a purchase or an abandoned cart (in their last session)."""
    cart_key = tb.order_key[EVENT_CODE["add_to_cart"]] + KEY_JITTER
    dec = c.s == STAGE_D
    buy = dec & (c.nxt == STAGE_R)
    ls = ss.last_sess[buy]
    f.add(ls, EVENT_CODE["add_to_cart"], cart_key)
    f.add(ls, EVENT_CODE["begin_checkout"], KEY_CHECKOUT)
    f.add(ls, EVENT_CODE["purchase"], KEY_PURCHASE)
    ab = dec & (c.nxt != STAGE_R)
    ls = ss.last_sess[ab]
    cart = rng.random(len(ls)) < p.abandon_add_to_cart_prob
    f.add(ls[cart], EVENT_CODE["add_to_cart"], cart_key)
    chk = cart & (rng.random(len(ls)) < p.abandon_checkout_prob / max(p.abandon_add_to_cart_prob, 1e-9))
    f.add(ls[chk], EVENT_CODE["begin_checkout"], KEY_CHECKOUT)


def _force_retention(f: ForcedEvents, rng: np.random.Generator, p: GeneratorParams, tb: Tables,
                     pop: Population, c: Cohort, ss: Sessions, onboard: np.ndarray,
                     winback: np.ndarray) -> np.ndarray:
    """Onboarding after a first purchase, win-back after a lapse, repeat purchases.

    Returns whether each cohort customer made a repeat purchase in this episode.
    """
    ob = ss.c_start[onboard & (c.s == STAGE_R)]
    is_ret = ss.sess_stage == STAGE_R
    is_ret[ob] = False  # the order-confirmation session is not a repeat purchase
    ret_sess = np.flatnonzero(is_ret)
    f.add(ob, EVENT_CODE["email_open"], 0)
    f.add(ob, EVENT_CODE["onboarding"], 1)
    wb = ss.c_start[winback & (c.s == STAGE_R)]
    f.add(wb, EVENT_CODE["email_click"], 0)
    repeat_buyer = np.zeros(c.m, bool)
    if len(ret_sess):
        gr = c.g[ss.own[ret_sess]]
        prep = sigmoid(logit(p.repeat_purchase_prob) + 0.8 * pop.loy[gr] + 0.4 * pop.z[gr])
        rep = ret_sess[rng.random(len(ret_sess)) < prep]
        repeat_buyer = np.zeros(c.m, bool)
        repeat_buyer[ss.own[rep]] = True
        f.add(rep, EVENT_CODE["product_view"], tb.order_key[EVENT_CODE["product_view"]])
        f.add(rep, EVENT_CODE["add_to_cart"], tb.order_key[EVENT_CODE["add_to_cart"]] + KEY_JITTER)
        f.add(rep, EVENT_CODE["begin_checkout"], KEY_CHECKOUT)
        f.add(rep, EVENT_CODE["purchase"], KEY_PURCHASE)
    return repeat_buyer


def _force_advocacy(f: ForcedEvents, rng: np.random.Generator, tb: Tables, c: Cohort,
                    ss: Sessions) -> None:
    """Advocacy episodes open with an advocacy event (advocacy_mix)."""
    av = ss.c_start[c.s == STAGE_V]
    if len(av):
        at = categorical(rng, tb.adv_cdf, len(av)).astype(np.int8)
        f.add(av, at, tb.order_key[at])
