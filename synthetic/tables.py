"""Numeric lookup tables of the simulator, derived once from a :class:`GeneratorParams`.

Every table is indexed by the integer codes of :mod:`journey_stage.synthetic.vocabulary`
(stage codes 0-5, event-type codes in taxonomy order, channel codes in ``CHANNELS`` order).
"""

from __future__ import annotations

import numpy as np

from journey_stage.synthetic.arrays import cdf, logit, vec
from journey_stage.synthetic.params import GeneratorParams
from journey_stage.synthetic.vocabulary import (
    ACQUISITIONS,
    CAMPAIGN_EVENTS,
    CHANNEL_CODE,
    CHANNEL_RULES,
    CHANNELS,
    EVENT_CODE,
    EVENT_TYPES,
    FUNNEL_STAGES,
    KEY_STEP,
    SESSION_ORDER,
    SOCIAL_CODE,
    SOCIAL_PLATFORMS,
    STAGE_A,
    STAGE_C,
    STAGE_D,
    STAGE_L,
    STAGE_R,
    STAGE_V,
    STAGES,
)

#: acquisition -> (first stage, first event type, channel code or SOCIAL_CODE)
_FIRST_TOUCH: dict[str, tuple[int, str, int]] = {
    "paid_social": (STAGE_A, "ad_impression", SOCIAL_CODE),
    "influencer": (STAGE_A, "influencer_view", CHANNEL_CODE["influencer"]),
    "organic_social": (STAGE_A, "organic_post_view", SOCIAL_CODE),
    "search": (STAGE_C, "page_view", CHANNEL_CODE["search"]),
    "display": (STAGE_A, "ad_impression", CHANNEL_CODE["display"]),
    "direct": (STAGE_C, "page_view", CHANNEL_CODE["direct"]),
    "referral": (STAGE_C, "page_view", CHANNEL_CODE["referral"]),
}


class Tables:
    """Numeric lookup tables derived from a GeneratorParams."""

    def __init__(self, p: GeneratorParams) -> None:
        self._acquisition(p)
        self._episodes(p)
        self._transitions(p)
        self._transition_gaps(p)
        self._lapses(p)
        self._channels(p)
        self._event_types(p)

    def _acquisition(self, p: GeneratorParams) -> None:
        """acq_p: CDF of the acquisition route; acq_stage/type/chan: the first touch per route."""
        self.acq_p = cdf(vec(p.acquisition_mix, ACQUISITIONS, normalise=True))
        self.acq_stage = np.array([_FIRST_TOUCH[a][0] for a in ACQUISITIONS], np.int8)
        self.acq_type = np.array([EVENT_CODE[_FIRST_TOUCH[a][1]] for a in ACQUISITIONS], np.int8)
        self.acq_chan = np.array([_FIRST_TOUCH[a][2] for a in ACQUISITIONS], np.int8)

    def _episodes(self, p: GeneratorParams) -> None:
        """Per-stage session counts, gaps and event counts; event-type and source CDFs."""
        fs = FUNNEL_STAGES
        self.sess_mean = np.append(vec(p.sessions_per_episode, fs), 1.0)
        self.sess_gap = np.append(vec(p.session_gap_days, fs), 1.0)
        self.extra = np.append(vec(p.extra_events_per_session, fs), 0.0)

        ew = dict(p.event_weights)
        self.type_cdf = [cdf(vec(ew[s], EVENT_TYPES)) for s in fs]
        src_names = ("social",) + CHANNELS[4:]
        src_codes = np.array([SOCIAL_CODE] + [CHANNEL_CODE[c] for c in CHANNELS[4:]], np.int8)
        sw = dict(p.session_sources)
        self.src_cdf = [cdf(vec(sw[s], src_names)) for s in fs]
        self.src_codes = src_codes
        self.adv_cdf = cdf(vec(p.advocacy_mix, EVENT_TYPES))

    def _transitions(self, p: GeneratorParams) -> None:
        """Base probability matrix P[from, to] and the trait effect matrices EZ, EL, EA, EACT."""
        tr = dict(p.transitions)
        self.P = np.zeros((6, 6))
        for i, s in enumerate(FUNNEL_STAGES):
            self.P[i] = vec(tr[s], STAGES, normalise=True)
        self.EZ = np.zeros((6, 6))
        self.EL = np.zeros((6, 6))
        self.EA = np.zeros((6, 6))
        for mat, eff in ((self.EZ, p.intent_effects), (self.EL, p.loyalty_effects),
                         (self.EA, p.advocacy_effects)):
            for frm, to, v in eff:
                mat[STAGES.index(frm), STAGES.index(to)] += v
        self.EACT = np.zeros((6, 6))
        self.EACT[:5, STAGE_L] = p.activity_lapse_effect

    def _transition_gaps(self, p: GeneratorParams) -> None:
        """G[from, to]: mean pause before the next episode, by kind of move."""
        g = dict(p.transition_gap_days)
        G = np.full((6, 6), g["forward"])
        for i in range(3):
            for j in range(3):
                G[i, j] = g["forward"] if j > i else (g["stall"] if j == i else g["backward"])
        G[STAGE_D, STAGE_R] = g["purchase"]
        G[STAGE_R, STAGE_R] = g["retention"]
        G[STAGE_R, STAGE_V] = g["to_advocacy"]
        G[STAGE_V, STAGE_V] = g["to_advocacy"]
        G[STAGE_V, STAGE_R] = g["from_advocacy"]
        self.G = G

    def _lapses(self, p: GeneratorParams) -> None:
        """Mean lapse length and return log-odds, [before, after] the first purchase."""
        lapse = dict(p.lapse_days)
        ret = dict(p.lapse_return_prob)
        self.lapse_mean = np.array([lapse["before_purchase"], lapse["after_purchase"]])
        self.ret_logit = np.array([logit(ret["before_purchase"]), logit(ret["after_purchase"])])

    def _channels(self, p: GeneratorParams) -> None:
        """Channel rule and fixed channel per event type; platform and ad-channel CDFs."""
        rule = np.zeros(len(EVENT_TYPES), np.int8)
        fixed = np.full(len(EVENT_TYPES), -1, np.int8)
        for e, (r, c) in CHANNEL_RULES.items():
            rule[EVENT_CODE[e]] = r
            if c is not None:
                fixed[EVENT_CODE[e]] = CHANNEL_CODE[c]
        self.rule, self.fixed = rule, fixed
        self.platform_cdf = cdf(vec(p.platform_weights, SOCIAL_PLATFORMS, normalise=True))
        self.ad_cdf = cdf(vec(p.ad_channel_mix, ("social", "display", "search"), normalise=True))
        self.ad_codes = np.array([SOCIAL_CODE, CHANNEL_CODE["display"], CHANNEL_CODE["search"]], np.int8)

    def _event_types(self, p: GeneratorParams) -> None:
        """In-session sort key, campaign flag and once-only pairs per event type."""
        order = np.zeros(len(EVENT_TYPES), np.int64)
        for i, e in enumerate(SESSION_ORDER):
            order[EVENT_CODE[e]] = i * KEY_STEP
        self.order_key = order
        self.campaign_type = np.zeros(len(EVENT_TYPES), bool)
        self.campaign_type[[EVENT_CODE[e] for e in CAMPAIGN_EVENTS]] = True
        self.once_only = [(EVENT_CODE[a], EVENT_CODE[b]) for a, b in p.once_only_events]
