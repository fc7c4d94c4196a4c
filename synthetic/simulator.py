"""The per-customer journey simulation: waves of customers, episode by episode.

:class:`Simulator` runs the whole population: organic customers first, then the friends their
referrals bring in (wave after wave), then organic customers to fill the requested count. Each
wave is simulated one *episode* (one visit to a latent stage) at a time for all of its active
customers at once: draw the next latent stage, the episode's sessions and events
(:mod:`~journey_stage.synthetic.episode`) and their attributes
(:mod:`~journey_stage.synthetic.touchpoints`), record them, then advance every customer to their
next episode (or lapse). All draws come from one ``numpy.random.Generator`` in a fixed order.

The results are lists of per-episode chunks of integer codes: ``ev`` (events) and ``st`` (the
latent stage path); :mod:`~journey_stage.synthetic.output` turns them into frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from journey_stage.synthetic.arrays import categorical, sigmoid
from journey_stage.synthetic.clock import Clock, Months
from journey_stage.synthetic.episode import (
    Cohort,
    Sessions,
    draw_random_events,
    draw_sessions,
    force_funnel_events,
)
from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.population import Population
from journey_stage.synthetic.tables import Tables
from journey_stage.synthetic.touchpoints import (
    campaign_codes,
    event_channels,
    event_times,
    order_values,
    session_sources,
)
from journey_stage.synthetic.vocabulary import (
    ACQUISITIONS,
    EVENT_CODE,
    STAGE_A,
    STAGE_C,
    STAGE_D,
    STAGE_L,
    STAGE_R,
    STAGE_V,
)

#: Per-wave journey state, one entry per customer of the wave.
State = dict[str, np.ndarray]


class Simulator:
    """Simulates ``n`` customers over ``days`` days from ``start``, seeded with ``seed``."""

    def __init__(self, n: int, seed: int, start: pd.Timestamp, days: float, p: GeneratorParams):
        self.n, self.p, self.days = n, p, float(days)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6A6F75726E6579]))
        self.tb = Tables(p)
        self.clock = Clock(p, start, days)
        self.u_end = float(self.clock.to_activity(self.days))
        self.end_sec = int(round(self.days * 86400))
        self.months = Months(start, self.end_sec)
        self.pop = Population(n)  # per-customer (global index) data
        # outputs (lists of per-iteration chunks)
        self.ev: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "t", "type", "chan", "stage", "camp", "value")}
        self.st: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "stage", "t")}

    # ---------------- waves of customers ----------------
    def run(self) -> None:
        """Organic customers, referral waves up to referral_share_cap, organic fill-up."""
        p, rng, n = self.p, self.rng, self.n
        cap = int(round(n * p.referral_share_cap)) if n > 1 else 0
        budget = cap
        cand = self._organic_wave(n - cap)
        while budget > 0 and len(cand[0]):
            t_arr, referrer = cand
            if len(t_arr) > budget:
                pick = np.sort(rng.choice(len(t_arr), budget, replace=False))
                t_arr, referrer = t_arr[pick], referrer[pick]
            o = np.argsort(t_arr, kind="stable")
            t_arr, referrer = t_arr[o], referrer[o]
            k = len(t_arr)
            budget -= k
            ix = self.pop.add(rng, p, self.tb, k, t_arr, np.full(k, ACQUISITIONS.index("referral")), referrer)
            cand = self._simulate(ix)
        if budget > 0:
            self._organic_wave(budget)
        assert self.pop.next_id == n

    def _organic_wave(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k organic customers arriving uniformly in activity time; their referral candidates."""
        rng = self.rng
        arr = np.sort(self.clock.to_wall(rng.random(k) * self.u_end))
        acq = categorical(rng, self.tb.acq_p, k)
        ix = self.pop.add(rng, self.p, self.tb, k, arr, acq, None)
        return self._simulate(ix)

    def _simulate(self, gix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Simulate the journeys of customers gix; return referral candidates (arrival, referrer)."""
        tb = self.tb
        m0 = len(gix)
        stage = tb.acq_stage[self.pop.acq[gix]].copy()
        u = self.clock.to_activity(self.pop.arrival_sec[gix] / 86400.0 + 0.5 / 86400.0)
        state = {
            "first": np.ones(m0, bool),
            "converted": np.zeros(m0, bool),
            "onboard": np.zeros(m0, bool),
            "winback": np.zeros(m0, bool),
            "alive": np.ones(m0, bool),
            "idle": np.zeros(m0, np.int16),
        }
        ref_t: list[np.ndarray] = []
        ref_by: list[np.ndarray] = []
        while True:
            act = np.flatnonzero(state["alive"] & (u < self.u_end))
            if len(act) == 0:
                break
            self._episode(gix, act, stage, u, state, ref_t, ref_by)
        if ref_t:
            return np.concatenate(ref_t), np.concatenate(ref_by)
        return np.zeros(0), np.zeros(0, np.int64)

    # ---------------- one episode of every active customer ----------------
    def _episode(self, gix: np.ndarray, act: np.ndarray, stage: np.ndarray, u: np.ndarray,
                 state: State, ref_t: list[np.ndarray], ref_by: list[np.ndarray]) -> None:
        """One episode for the wave positions ``act``; updates stage, u and state in place."""
        p, tb, rng, pop = self.p, self.tb, self.rng, self.pop
        c = self._cohort(gix, act, stage, state)
        ss = draw_sessions(rng, p, tb, pop.act, u[act], c)
        r_sess, r_type, r_key = draw_random_events(rng, tb, ss)
        forced, repeat_buyer = force_funnel_events(
            rng, p, tb, pop, c, ss, state["onboard"][act], state["winback"][act]
        )
        e_sess, e_type, e_fch = forced.merge(r_sess, r_type, r_key)
        e_g = c.g[ss.own[e_sess]]
        t_sec, e_start, sess_t = event_times(rng, p, self.clock, ss, e_sess)
        src = session_sources(rng, p, tb, pop, c, ss)
        chan, pur = event_channels(rng, p, tb, pop.pref, src, e_sess, e_type, e_fch, e_g)
        value = order_values(rng, p, pop.spend, e_g, pur)
        camp = campaign_codes(rng, p, tb, self.months, e_type, chan, t_sec)
        self._record_episode_starts(c, ss, sess_t)
        self._referrals(e_type, e_g, t_sec, ref_t, ref_by)
        cust_start = e_start[ss.c_start]  # first event of each customer (events are grouped)
        last_t = np.maximum.reduceat(t_sec, cust_start)
        self._emit(e_g, t_sec, e_type, chan, ss.sess_stage[e_sess], camp, value)
        self._advance(c, ss, last_t, repeat_buyer, stage, u, state)

    def _cohort(self, gix: np.ndarray, act: np.ndarray, stage: np.ndarray, state: State) -> Cohort:
        """The active customers' state, and their next latent stage (drawn now)."""
        g = gix[act]  # global customer ids
        s = stage[act].astype(np.int64)
        idle = state["idle"][act]
        nxt = self._transition(s, g, idle)
        slow = 1.0 + self.p.fatigue_gap_growth * idle  # interest fatigue thins activity out
        return Cohort(act, g, s, state["first"][act], state["converted"][act], idle, nxt, slow)

    def _transition(self, s: np.ndarray, g: np.ndarray, idle: np.ndarray) -> np.ndarray:
        """Next latent stage: base transition row tilted by traits, dropout and fatigue."""
        tb, rng, pop = self.tb, self.rng, self.pop
        logw = (
            tb.EZ[s] * pop.z[g][:, None]
            + tb.EL[s] * pop.loy[g][:, None]
            + tb.EA[s] * pop.adv[g][:, None]
            + tb.EACT[s] * np.log(pop.act[g])[:, None]
        )
        logw[:, STAGE_L] += self.p.fatigue_lapse_effect * idle + pop.drop[g]
        w = tb.P[s] * np.exp(logw)
        c = np.cumsum(w, axis=1)
        r = rng.random(len(s)) * c[:, -1]
        return (c < r[:, None]).sum(axis=1).astype(np.int8)

    def _record_episode_starts(self, c: Cohort, ss: Sessions, sess_t: np.ndarray) -> None:
        """Latent stage path: the episode starts with its first session."""
        ep_t = np.floor(sess_t[ss.c_start] * 86400.0).astype(np.int64)
        self.st["cust"].append(c.g)
        self.st["stage"].append(c.s.astype(np.int8))
        self.st["t"].append(ep_t)

    def _referrals(self, e_type: np.ndarray, e_g: np.ndarray, t_sec: np.ndarray,
                   ref_t: list[np.ndarray], ref_by: list[np.ndarray]) -> None:
        """Referral events that bring in a friend: append (arrival wall day, referrer)."""
        p, rng = self.p, self.rng
        refm = e_type == EVENT_CODE["referral"]
        if refm.any():
            rs = np.flatnonzero(refm & (t_sec < self.end_sec))
            ok = rs[rng.random(len(rs)) < p.referral_conversion_prob]
            # the friend's first visit comes at least a minute after the invitation
            arr = (t_sec[ok] + 60) / 86400.0 + rng.exponential(p.referral_delay_days, len(ok))
            keep = arr < self.days
            ref_t.append(arr[keep])
            ref_by.append(e_g[ok][keep])

    # ---------------- to the next episode ----------------
    def _advance(self, c: Cohort, ss: Sessions, last_t: np.ndarray, repeat_buyer: np.ndarray,
                 stage: np.ndarray, u: np.ndarray, state: State) -> None:
        """Pause before the next episode, lapses and returns, journey state for the next loop."""
        p, tb, rng = self.p, self.tb, self.rng
        act, s, nxt, m = c.act, c.s, c.nxt, c.m
        last_u = ss.sess_u[ss.last_sess]
        pause = rng.exponential(size=m) * tb.G[s, nxt] * c.slow / self.pop.act[c.g]
        new_u = last_u + p.min_transition_gap_hours / 24.0 + pause
        new_stage = nxt.copy()
        lap = nxt == STAGE_L  # (a returning customer starts afresh: counted as progress)
        if lap.any():
            wbk = self._lapse(c, np.flatnonzero(lap), last_t, last_u, new_u, new_stage, state)
        else:
            wbk = np.zeros(m, bool)
        bought = (s == STAGE_D) & (nxt == STAGE_R)
        state["converted"][act] = c.conv | bought
        state["onboard"][act] = bought
        state["winback"][act] = wbk
        state["first"][act] = False
        # interest fatigue: progress resets the count, going nowhere increments it
        progress = ((nxt > s) & (nxt != STAGE_L)) | repeat_buyer | (s == STAGE_V) | lap
        state["idle"][act] = np.where(progress, 0, np.minimum(c.idle + 1, 1000))
        stage[act] = new_stage
        u[act] = new_u

    def _lapse(self, c: Cohort, li: np.ndarray, last_t: np.ndarray, last_u: np.ndarray,
               new_u: np.ndarray, new_stage: np.ndarray, state: State) -> np.ndarray:
        """Lapsing cohort positions li: record the lapse, decide return or churn.

        Sets the returners' next episode start (``new_u``) and stage (``new_stage``) in place,
        ends the others' journeys; returns which customers come back for a win-back.
        """
        p, tb, rng = self.p, self.tb, self.rng
        g = c.g
        lt = last_t[li] + 1
        okl = lt < self.end_sec
        self.st["cust"].append(g[li][okl])
        self.st["stage"].append(np.full(int(okl.sum()), STAGE_L, np.int8))
        self.st["t"].append(lt[okl])
        cv = c.conv[li]
        trait = np.where(cv, self.pop.loy[g[li]], self.pop.z[g[li]])
        pr = sigmoid(tb.ret_logit[cv.astype(int)] + p.loyalty_return_effect * trait)
        back = rng.random(len(li)) < pr
        new_u[li] = last_u[li] + rng.exponential(size=len(li)) * tb.lapse_mean[cv.astype(int)]
        to_aw = rng.random(len(li)) < p.return_to_awareness_prob
        new_stage[li] = np.where(cv, STAGE_R, np.where(to_aw, STAGE_A, STAGE_C))
        state["alive"][c.act[li[~back]]] = False
        wbk = np.zeros(c.m, bool)
        wbk[li] = cv & back
        return wbk

    def _emit(self, cust, t_sec, etype, chan, estage, camp, value) -> None:
        """Append the events inside the period to the output chunks."""
        keep = t_sec < self.end_sec
        if not keep.all():
            cust, t_sec, etype, chan, estage, camp, value = (
                x[keep] for x in (cust, t_sec, etype, chan, estage, camp, value)
            )
        self.ev["cust"].append(cust.astype(np.int32))
        self.ev["t"].append(t_sec)
        self.ev["type"].append(etype)
        self.ev["chan"].append(chan)
        self.ev["stage"].append(estage.astype(np.int8))
        self.ev["camp"].append(camp)
        self.ev["value"].append(value)
