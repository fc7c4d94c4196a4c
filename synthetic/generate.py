"""Synthetic social-media customer journeys (SPEC section 9).

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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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

# --------------------------------------------------------------------------------------------
# Taxonomy (the `five_stage` preset of SPEC section 3) and channels
# --------------------------------------------------------------------------------------------

STAGES: tuple[str, ...] = (
    "awareness",
    "consideration",
    "decision",
    "retention",
    "advocacy",
    "lapsed",
)
FUNNEL_STAGES: tuple[str, ...] = STAGES[:5]
_A, _C, _D, _R, _V, _L = range(6)

STAGE_EVENTS: dict[str, tuple[str, ...]] = {
    "awareness": (
        "ad_impression",
        "ad_click",
        "social_view",
        "social_follow",
        "influencer_view",
        "hashtag_view",
        "organic_post_view",
    ),
    "consideration": (
        "page_view",
        "product_view",
        "review_read",
        "compare",
        "newsletter_signup",
        "webinar",
        "faq_view",
    ),
    "decision": (
        "add_to_cart",
        "begin_checkout",
        "pricing_view",
        "coupon_view",
        "support_presale",
        "purchase",
    ),
    "retention": (
        "support_contact",
        "repeat_visit",
        "loyalty_join",
        "email_open",
        "email_click",
        "onboarding",
    ),
    "advocacy": ("review_written", "referral", "share", "ugc_post", "testimonial"),
}
EVENT_TYPES: tuple[str, ...] = tuple(e for s in FUNNEL_STAGES for e in STAGE_EVENTS[s])
EVENT_STAGE: dict[str, str] = {e: s for s in FUNNEL_STAGES for e in STAGE_EVENTS[s]}
CONVERSION_EVENTS: tuple[str, ...] = ("purchase",)

CHANNELS: tuple[str, ...] = (
    "facebook",
    "instagram",
    "tiktok",
    "youtube",
    "influencer",
    "email",
    "search",
    "display",
    "referral",
    "direct",
    "store",
    "support",
)
SOCIAL_PLATFORMS: tuple[str, ...] = CHANNELS[:4]

#: How a customer first reaches the brand; decides the first event, its channel and first stage.
ACQUISITIONS: tuple[str, ...] = (
    "paid_social",
    "influencer",
    "organic_social",
    "search",
    "display",
    "direct",
    "referral",
)

EVENT_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "timestamp",
    "event_type",
    "channel",
    "value",
    "campaign",
    "true_stage",
)

_ET = {e: i for i, e in enumerate(EVENT_TYPES)}
_CH = {c: i for i, c in enumerate(CHANNELS)}
_SOCIAL = -2  # pseudo channel code: "the customer's social platform", resolved per event

# Channel rule per event type: how the channel of an event is chosen.
_RULE_SESSION, _RULE_SOCIAL, _RULE_AD, _RULE_FIXED = 0, 1, 2, 3
_CHANNEL_RULES: dict[str, tuple[int, str | None]] = {
    # awareness: paid ads run on social platforms, display networks and search
    "ad_impression": (_RULE_AD, None),
    "ad_click": (_RULE_AD, None),
    "social_view": (_RULE_SOCIAL, None),
    "social_follow": (_RULE_SOCIAL, None),
    "influencer_view": (_RULE_FIXED, "influencer"),
    "hashtag_view": (_RULE_SOCIAL, None),
    "organic_post_view": (_RULE_SOCIAL, None),
    # web / app events carry the traffic source of their session
    "page_view": (_RULE_SESSION, None),
    "product_view": (_RULE_SESSION, None),
    "review_read": (_RULE_SESSION, None),
    "compare": (_RULE_SESSION, None),
    "newsletter_signup": (_RULE_SESSION, None),
    "webinar": (_RULE_FIXED, "email"),
    "faq_view": (_RULE_SESSION, None),
    "add_to_cart": (_RULE_SESSION, None),
    "begin_checkout": (_RULE_SESSION, None),
    "pricing_view": (_RULE_SESSION, None),
    "coupon_view": (_RULE_SESSION, None),
    "support_presale": (_RULE_FIXED, "support"),
    "purchase": (_RULE_SESSION, None),  # or "store" (store_purchase_share)
    "support_contact": (_RULE_FIXED, "support"),
    "repeat_visit": (_RULE_SESSION, None),
    "loyalty_join": (_RULE_SESSION, None),
    "email_open": (_RULE_FIXED, "email"),
    "email_click": (_RULE_FIXED, "email"),
    "onboarding": (_RULE_FIXED, "email"),
    "review_written": (_RULE_SESSION, None),
    "referral": (_RULE_FIXED, "referral"),
    "share": (_RULE_SOCIAL, None),
    "ugc_post": (_RULE_SOCIAL, None),
    "testimonial": (_RULE_SESSION, None),
}

#: Event types that carry a campaign id ("<channel>_<YYYYMM>_<k>"); all others have a null campaign.
CAMPAIGN_EVENTS: tuple[str, ...] = (
    "ad_impression",
    "ad_click",
    "influencer_view",
    "email_open",
    "email_click",
    "webinar",
)

# Order of event types inside a session (funnel order; random events get jitter around it).
_SESSION_ORDER: tuple[str, ...] = (
    "ad_impression",
    "influencer_view",
    "organic_post_view",
    "hashtag_view",
    "social_view",
    "ad_click",
    "social_follow",
    "email_open",
    "email_click",
    "onboarding",
    "webinar",
    "page_view",
    "repeat_visit",
    "faq_view",
    "product_view",
    "review_read",
    "compare",
    "newsletter_signup",
    "support_contact",
    "pricing_view",
    "coupon_view",
    "support_presale",
    "add_to_cart",
    "begin_checkout",
    "purchase",
    "loyalty_join",
    "review_written",
    "testimonial",
    "share",
    "ugc_post",
    "referral",
)
_KEY_STEP = 64  # sort key = rank * 64 + jitter
_KEY_JITTER = 150  # random events may swap with neighbours up to ~2 ranks away
_KEY_CHECKOUT = 4094
_KEY_PURCHASE = 4095
_KEY_SPAN = 4096


def _f(default: Any, doc: str, source: str) -> Any:
    """A dataclass field with its documentation and the source of its default."""
    return field(default=default, metadata={"doc": doc, "source": source})


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorParams:
    """Every knob of the journey simulator, with its default and where that default comes from.

    Mappings are tuples of ``(name, value)`` pairs so the dataclass stays frozen and hashable.
    Probabilities are for the *average* customer; trait effects (log-odds) move them per customer.
    Times are in days of *activity time*, which the intraday/weekly/seasonal profile maps to wall
    time (see ``hour_weights``). Change a few with ``dataclasses.replace(GeneratorParams(), ...)``.
    """

    # ---- acquisition ----
    acquisition_mix: tuple[tuple[str, float], ...] = _f(
        (
            ("paid_social", 0.38),
            ("influencer", 0.12),
            ("organic_social", 0.17),
            ("search", 0.18),
            ("display", 0.07),
            ("direct", 0.08),
        ),
        "How organically acquired customers first reach the brand. paid_social/display start in "
        "awareness with an ad_impression, influencer with an influencer_view, organic_social with "
        "an organic_post_view; search and direct start in consideration with a page_view.",
        "Assumption for a social-first D2C brand: social platforms are the leading discovery "
        "channel for younger shoppers (GWI / DataReportal 'Digital 2024': social networks rival "
        "search engines for brand research); search keeps a large share of intent traffic.",
    )
    referral_conversion_prob: float = _f(
        0.30,
        "Probability that one referral event (an advocate inviting a friend) brings in a new "
        "customer, who arrives through channel 'referral' a few days later and starts in "
        "consideration.",
        "Assumption; referral invitations convert far better than ads because they come from a "
        "friend (Nielsen Global Trust in Advertising 2015: 83% trust recommendations of people "
        "they know).",
    )
    referral_share_cap: float = _f(
        0.05,
        "Upper bound on the share of all customers who are referral-acquired. Customers are "
        "generated in waves: organic customers first, then the friends their referrals bring in "
        "(and their friends' friends), and organic customers fill whatever the referrals leave "
        "of the requested total, which stays exactly `customers`.",
        "Implementation bound that keeps the requested customer count exact; with the defaults "
        "referrals bring in about 1% of customers, below the cap (assumption: referral "
        "programmes deliver a small share of new customers).",
    )
    referral_delay_days: float = _f(
        2.0,
        "Mean (exponential) delay between a referral event and the referred friend's first visit.",
        "Assumption (invites are usually acted on within days).",
    )
    referred_intent_lift: float = _f(
        0.4,
        "Added to the purchase-intent trait (standard normal) of referred customers.",
        "Schmitt, Skiera & Van den Bulte 2011, 'Referral Programs and Customer Value', Journal of "
        "Marketing 75(1): referred customers have a higher contribution margin, a persistently "
        "higher retention rate and at least 16% higher customer value.",
    )
    referred_loyalty_lift: float = _f(
        0.3,
        "Added to the loyalty trait of referred customers (lower churn).",
        "Schmitt, Skiera & Van den Bulte 2011 (see referred_intent_lift).",
    )
    # ---- customer heterogeneity ----
    activity_shape: float = _f(
        1.0,
        "Shape of the gamma distribution (mean 1) of each customer's activity rate, which divides "
        "all session and transition gaps. Smaller = more heterogeneous. Active customers also "
        "lapse less (activity_lapse_effect).",
        "Gamma-distributed rates as in the Pareto/NBD (Schmittlein, Morrison & Colombo 1987) and "
        "BG/NBD (Fader, Hardie & Lee 2005) customer-base models; their CDNOW purchase fit gives "
        "r ~ 0.24. Touchpoints are far less dispersed than purchases, so a milder 1.0 is used.",
    )
    intent_loyalty_corr: float = _f(
        0.4,
        "Correlation between the purchase-intent and loyalty traits (both standard normal).",
        "Assumption: customers keen to buy are also more likely to buy again.",
    )
    loyalty_advocacy_corr: float = _f(
        0.5,
        "Correlation between the loyalty and advocacy-propensity traits (standard normal).",
        "Assumption: satisfied, loyal customers are the ones who recommend (Reichheld 2003, "
        "'The One Number You Need to Grow', HBR: willingness to recommend tracks loyalty).",
    )
    # ---- sessions and events ----
    sessions_per_episode: tuple[tuple[str, float], ...] = _f(
        (
            ("awareness", 2.2),
            ("consideration", 2.6),
            ("decision", 1.8),
            ("retention", 2.0),
            ("advocacy", 1.5),
        ),
        "Mean number of sessions (geometric, >= 1) in one visit (episode) of a latent stage.",
        "Assumption calibrated to ~20 events per customer and year (see calibration table).",
    )
    session_gap_days: tuple[tuple[str, float], ...] = _f(
        (
            ("awareness", 4.0),
            ("consideration", 3.0),
            ("decision", 1.5),
            ("retention", 8.0),
            ("advocacy", 6.0),
        ),
        "Mean gap (exponential, divided by the customer's activity rate) between two sessions of "
        "the same episode, in days.",
        "Assumption: research and purchase sessions cluster within days; post-purchase contact "
        "is sparser (calibrated).",
    )
    extra_events_per_session: tuple[tuple[str, float], ...] = _f(
        (
            ("awareness", 1.2),
            ("consideration", 2.5),
            ("decision", 1.8),
            ("retention", 0.8),
            ("advocacy", 1.0),
        ),
        "Mean (Poisson) number of events in a session beyond the first one, before forced funnel "
        "events (add_to_cart, begin_checkout, purchase, onboarding, ...) are added.",
        "Assumption; e-commerce sessions average a handful of page views "
        "(Contentsquare Digital Experience Benchmark: ~5 pages per session on average).",
    )
    event_gap_minutes: float = _f(
        1.5,
        "Mean gap (exponential) between consecutive events of one session, in minutes.",
        "Assumption; typical e-commerce session durations of a few minutes (Contentsquare "
        "benchmark: average time on site ~5 minutes).",
    )
    event_weights: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = _f(
        (
            (
                "awareness",
                (
                    ("ad_impression", 0.36),
                    ("ad_click", 0.06),
                    ("social_view", 0.18),
                    ("social_follow", 0.04),
                    ("influencer_view", 0.12),
                    ("hashtag_view", 0.07),
                    ("organic_post_view", 0.17),
                ),
            ),
            (
                "consideration",
                (
                    ("page_view", 0.26),
                    ("product_view", 0.28),
                    ("review_read", 0.13),
                    ("compare", 0.08),
                    ("newsletter_signup", 0.04),
                    ("webinar", 0.015),
                    ("faq_view", 0.06),
                    ("ad_impression", 0.06),
                    ("ad_click", 0.03),
                    ("social_view", 0.035),
                ),
            ),
            (
                "decision",
                (
                    ("pricing_view", 0.18),
                    ("coupon_view", 0.10),
                    ("add_to_cart", 0.22),
                    ("begin_checkout", 0.04),
                    ("support_presale", 0.04),
                    ("product_view", 0.20),
                    ("review_read", 0.06),
                    ("compare", 0.05),
                    ("page_view", 0.05),
                    ("ad_click", 0.03),
                    ("ad_impression", 0.03),
                ),
            ),
            (
                "retention",
                (
                    ("email_open", 0.32),
                    ("email_click", 0.05),
                    ("repeat_visit", 0.22),
                    ("support_contact", 0.09),
                    ("loyalty_join", 0.04),
                    ("product_view", 0.10),
                    ("page_view", 0.08),
                    ("social_view", 0.06),
                    ("ad_impression", 0.04),
                ),
            ),
            (
                "advocacy",
                (
                    ("review_written", 0.10),
                    ("share", 0.10),
                    ("referral", 0.07),
                    ("ugc_post", 0.05),
                    ("testimonial", 0.03),
                    ("email_open", 0.18),
                    ("repeat_visit", 0.18),
                    ("social_view", 0.12),
                    ("product_view", 0.10),
                    ("support_contact", 0.04),
                ),
            ),
        ),
        "Relative weights of the event types drawn at random in a session of each latent stage. "
        "Stages also emit some earlier-stage events (retargeting ads during consideration, "
        "product views during decision) so the observed stage is not a copy of the latent one. "
        "purchase and onboarding are never drawn at random: they are forced by the funnel logic. "
        "Ratios follow the benchmarks: email click-to-open ~15% (Mailchimp: 21% opens, 2.6% "
        "clicks), impressions are down-sampled (one recorded ad_impression stands for many "
        "served ones; real CTRs are ~1% or less, WordStream benchmarks: Facebook ~0.9%, Google "
        "display ~0.35-0.46%, Google search ~2-3%).",
        "Assumption shaped by the cited benchmarks; the advocacy mix follows advocacy_mix.",
    )
    # ---- latent stage transitions ----
    transitions: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = _f(
        (
            (
                "awareness",
                (("awareness", 0.22), ("consideration", 0.34), ("lapsed", 0.44)),
            ),
            (
                "consideration",
                (
                    ("awareness", 0.10),
                    ("consideration", 0.22),
                    ("decision", 0.30),
                    ("lapsed", 0.38),
                ),
            ),
            (
                "decision",
                (
                    ("consideration", 0.38),
                    ("decision", 0.18),
                    ("retention", 0.16),
                    ("lapsed", 0.28),
                ),
            ),
            (
                "retention",
                (("retention", 0.59), ("advocacy", 0.05), ("lapsed", 0.36)),
            ),
            (
                "advocacy",
                (("retention", 0.50), ("advocacy", 0.16), ("lapsed", 0.34)),
            ),
        ),
        "Probability of the next latent stage at the end of an episode, for the average "
        "customer (rows sum to 1). decision -> retention means the episode ends with a purchase; "
        "every other exit from decision is a cart abandonment (back to consideration, stalling "
        "in decision, or dropping out). A self-transition is a stall (a longer pause before the "
        "next episode of the same stage). Converted customers only move among retention, "
        "advocacy and lapsed.",
        "decision: 70% of carts are abandoned (Baymard Institute, cart abandonment rate, average "
        "of 49 studies: 70.19%), hence 0.30 purchase. Funnel drop-offs and stalls are "
        "assumptions calibrated so that 5-25% of customers buy within a year and ~2-3% of "
        "sessions convert (typical e-commerce conversion rate, e.g. Dynamic Yield and Smart "
        "Insights benchmarks: 2-3%).",
    )
    intent_effects: tuple[tuple[str, str, float], ...] = _f(
        (
            ("awareness", "consideration", 0.7),
            ("consideration", "decision", 0.8),
            ("decision", "retention", 0.9),
            ("awareness", "lapsed", -0.3),
            ("consideration", "lapsed", -0.3),
            ("decision", "lapsed", -0.3),
        ),
        "Log-odds effect of the purchase-intent trait z ~ N(0, 1) on (from, to) transitions "
        "(weight multiplied by exp(effect * z), then renormalised).",
        "Assumption: per-customer purchase propensity as in BG/NBD-style heterogeneity; makes a "
        "customer's history informative about their future.",
    )
    loyalty_effects: tuple[tuple[str, str, float], ...] = _f(
        (
            ("retention", "lapsed", -0.7),
            ("advocacy", "lapsed", -0.6),
            ("retention", "retention", 0.2),
        ),
        "Log-odds effect of the loyalty trait on post-purchase transitions (churn).",
        "Assumption; the Beta-distributed dropout of the BG/NBD model (Fader, Hardie & Lee "
        "2005) expressed on the log-odds scale.",
    )
    advocacy_effects: tuple[tuple[str, str, float], ...] = _f(
        (
            ("retention", "advocacy", 1.1),
            ("advocacy", "advocacy", 0.8),
        ),
        "Log-odds effect of the advocacy-propensity trait on moving into / staying in advocacy.",
        "Assumption: a minority of customers does most reviewing and referring "
        "(Texas Tech study, widely quoted: 83% of satisfied customers are willing to refer, "
        "only 29% do).",
    )
    activity_lapse_effect: float = _f(
        -0.4,
        "Log-odds effect of log(activity rate) on every transition into lapsed (active customers "
        "drop out less).",
        "Assumption (recency/frequency predict survival in BG/NBD).",
    )
    dropout_sd: float = _f(
        1.5,
        "Standard deviation of a per-customer random effect (normal, log-odds) added to every "
        "transition into lapsed: some customers are simply more likely to drop out than others.",
        "Heterogeneous dropout probabilities as in the BG/NBD model (Fader, Hardie & Lee 2005: "
        "Beta-distributed dropout); customers who have stayed long are, by selection, the "
        "sticky ones, so tenure and history predict survival.",
    )
    session_gap_shape: float = _f(
        2.0,
        "Gamma shape of the gaps between sessions of an episode (1 = exponential, larger = more "
        "regular rhythms).",
        "Assumption: people browse in rough routines (evenings, weekends), so gaps within an "
        "episode are more regular than a memoryless process would give.",
    )
    fatigue_lapse_effect: float = _f(
        0.3,
        "Interest fatigue: log-odds added to the next transition into lapsed for every "
        "consecutive episode without progress (a stall, a move back, a retention visit without a "
        "repeat purchase). Progress (a forward move, a purchase, advocacy, a return after a "
        "lapse) resets the count.",
        "Assumption: engagement decays when a journey goes nowhere; it gives a customer's recent "
        "trajectory (backward moves, stalls, thinning activity) predictive value beyond the "
        "current stage.",
    )
    fatigue_gap_growth: float = _f(
        0.3,
        "Interest fatigue: session and transition gaps are multiplied by (1 + growth * count), "
        "so activity thins out before a customer drops out.",
        "Assumption (see fatigue_lapse_effect).",
    )
    transition_gap_days: tuple[tuple[str, float], ...] = _f(
        (
            ("forward", 1.5),
            ("backward", 5.0),
            ("stall", 14.0),
            ("purchase", 1.0),
            ("retention", 20.0),
            ("to_advocacy", 8.0),
            ("from_advocacy", 15.0),
        ),
        "Mean pause (exponential, divided by the activity rate) between the last session of an "
        "episode and the first session of the next one: forward (awareness->consideration->"
        "decision), backward (to an earlier funnel stage), stall (same funnel stage), purchase "
        "(decision->retention: order confirmation and onboarding), retention (retention->"
        "retention), to_advocacy and from_advocacy.",
        "Assumption calibrated for a realistic inter-event gap distribution.",
    )
    min_transition_gap_hours: float = _f(
        1.0,
        "Minimum pause between two episodes, so that latent stages do not interleave.",
        "Implementation detail.",
    )
    lapse_days: tuple[tuple[str, float], ...] = _f(
        (("before_purchase", 75.0), ("after_purchase", 100.0)),
        "Mean (exponential) length of a lapse for customers who will return, in activity days.",
        "Assumption; long enough that most lapses are visible as 30+ days of silence.",
    )
    lapse_return_prob: tuple[tuple[str, float], ...] = _f(
        (("before_purchase", 0.30), ("after_purchase", 0.35)),
        "Probability that a lapsed customer ever returns (the rest are gone for good: churn). "
        "Loyalty raises it after a purchase (loyalty_return_effect), intent before one.",
        "Assumption; retargeting and win-back campaigns recover a minority of lapsed customers.",
    )
    return_to_awareness_prob: float = _f(
        0.6,
        "A returning customer who never bought comes back in awareness (retargeting ad) with "
        "this probability, else directly in consideration (search, direct). Converted customers "
        "return in retention, starting with a win-back email_click.",
        "Assumption.",
    )
    loyalty_return_effect: float = _f(
        0.6,
        "Log-odds effect of loyalty (after a purchase) or intent (before) on lapse_return_prob.",
        "Assumption.",
    )
    # ---- funnel details ----
    abandon_add_to_cart_prob: float = _f(
        0.90,
        "In a decision episode that ends without a purchase (cart abandonment), probability that "
        "its last session contains an add_to_cart.",
        "Baymard Institute: ~70% of carts are abandoned; most abandoned decision visits have "
        "an item in the cart.",
    )
    abandon_checkout_prob: float = _f(
        0.30,
        "Probability that an abandoned decision visit reached begin_checkout.",
        "Baymard Institute: a large part of abandonment happens during checkout (extra costs, "
        "account creation, long checkout).",
    )
    repeat_purchase_prob: float = _f(
        0.022,
        "Probability that a retention session is a repeat-purchase session (product_view, "
        "add_to_cart, begin_checkout, purchase) for the average customer; raised by loyalty "
        "(0.8 per sd) and intent (0.4 per sd).",
        "Calibrated so that about a third of first-time buyers buy again within a year (the "
        "first-quarter cohort: ~35%; all buyers of the period: ~25%): RJMetrics' analysis of "
        "176 e-commerce retailers (18M customers) found 32% of customers make a second purchase "
        "in their first year; commonly quoted repeat-customer rates are 20-30% (~28%).",
    )
    store_purchase_share: float = _f(
        0.08,
        "Share of purchases completed in a physical store (channel 'store').",
        "Assumption for an omnichannel D2C brand (research online, purchase offline).",
    )
    order_value_median: float = _f(
        65.0,
        "Median order value (currency units) of the average customer.",
        "Average order values of roughly 70-150 across industries (e.g. Dynamic Yield "
        "e-commerce benchmarks); the log-normal mean here is ~80.",
    )
    order_value_customer_sigma: float = _f(
        0.5,
        "Log-normal sigma of a customer's typical order value around order_value_median.",
        "Assumption (spend heterogeneity).",
    )
    order_value_order_sigma: float = _f(
        0.35,
        "Log-normal sigma of one order's value around the customer's typical value.",
        "Assumption.",
    )
    advocacy_mix: tuple[tuple[str, float], ...] = _f(
        (
            ("review_written", 0.35),
            ("share", 0.28),
            ("referral", 0.17),
            ("ugc_post", 0.12),
            ("testimonial", 0.08),
        ),
        "Type of the advocacy event that opens every advocacy episode.",
        "Assumption: reviews are the most common form of advocacy (PowerReviews and Bazaarvoice "
        "report most shoppers write reviews only occasionally), referrals and UGC are rarer.",
    )
    once_only_events: tuple[tuple[str, str], ...] = _f(
        (
            ("social_follow", "social_view"),
            ("newsletter_signup", "page_view"),
            ("loyalty_join", "repeat_visit"),
        ),
        "Event types that happen at most once per customer; later draws become the paired type.",
        "Realism: one follows a brand, signs up to a newsletter or joins a loyalty programme once.",
    )
    # ---- channels ----
    platform_weights: tuple[tuple[str, float], ...] = _f(
        (("facebook", 0.30), ("instagram", 0.30), ("tiktok", 0.20), ("youtube", 0.20)),
        "Distribution of a customer's preferred social platform, and of the platform of social "
        "events that do not happen on the preferred one.",
        "Loosely after Pew Research Center, 'Americans' Social Media Use' (Jan 2024: YouTube 83%, "
        "Facebook 68%, Instagram 47%, TikTok 33% of US adults use them), reweighted toward the "
        "platforms where brands run social ads and content.",
    )
    preferred_platform_prob: float = _f(
        0.75,
        "Probability that a social event happens on the customer's preferred platform.",
        "Assumption (most people multi-home but have a main platform).",
    )
    ad_channel_mix: tuple[tuple[str, float], ...] = _f(
        (("social", 0.70), ("display", 0.18), ("search", 0.12)),
        "Where ad_impression / ad_click events happen; 'social' resolves to a social platform.",
        "Assumption for a social-first advertiser.",
    )
    session_sources: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = _f(
        (
            (
                "awareness",
                (("social", 0.55), ("search", 0.15), ("direct", 0.10), ("display", 0.10),
                 ("influencer", 0.10)),
            ),
            (
                "consideration",
                (("social", 0.30), ("search", 0.30), ("direct", 0.20), ("email", 0.08),
                 ("display", 0.07), ("influencer", 0.05)),
            ),
            (
                "decision",
                (("social", 0.17), ("search", 0.25), ("direct", 0.38), ("email", 0.15),
                 ("display", 0.05)),
            ),
            (
                "retention",
                (("direct", 0.45), ("email", 0.35), ("search", 0.12), ("social", 0.08)),
            ),
            (
                "advocacy",
                (("direct", 0.50), ("email", 0.30), ("social", 0.20)),
            ),
        ),
        "Traffic source of a session, by latent stage; web events (page_view, product_view, "
        "add_to_cart, purchase, ...) carry it as their channel. 'social' resolves to a platform.",
        "Assumption: paid and organic social drive discovery, search and direct traffic carry "
        "purchase intent, email dominates after the purchase.",
    )
    campaigns_per_channel_month: int = _f(
        3,
        "Number of concurrent campaigns per channel and calendar month; campaign ids look like "
        "'instagram_202503_2'.",
        "Assumption.",
    )
    # ---- time profile ----
    hour_weights: tuple[float, ...] = _f(
        (1.2, 0.7, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.8, 3.0, 3.2,
         3.5, 3.3, 3.2, 3.2, 3.4, 3.7, 4.2, 4.8, 5.2, 5.0, 4.0, 2.5),
        "Relative activity by hour of day (UTC, hours 0-23).",
        "Stylised: quiet nights, a lunchtime bump and an evening peak around 20-21h, the usual "
        "shape of social media and online shopping traffic.",
    )
    weekday_weights: tuple[float, ...] = _f(
        (1.05, 1.0, 1.0, 0.98, 0.92, 0.95, 1.10),
        "Relative activity by day of week (Monday first).",
        "Stylised: Sunday evening and Monday are the busiest online shopping days.",
    )
    month_weights: tuple[float, ...] = _f(
        (1.05, 0.90, 0.95, 0.95, 0.95, 0.90, 0.90, 0.95, 0.95, 1.00, 1.25, 1.30),
        "Relative activity by calendar month (January first).",
        "Stylised seasonality: a Q4 peak (Black Friday, Cyber Monday, holidays) as in the US "
        "Census Bureau quarterly e-commerce reports, January sales, a summer lull.",
    )

    def __post_init__(self) -> None:
        def _check_mix(name: str, pairs: Any, allowed: tuple[str, ...]) -> None:
            names = [k for k, _ in pairs]
            bad = [k for k in names if k not in allowed]
            if bad:
                raise ValueError(f"GeneratorParams.{name}: unknown names {bad}; allowed {allowed}")
            vals = np.array([v for _, v in pairs], dtype=float)
            if len(vals) == 0 or (vals < 0).any() or vals.sum() <= 0 or not np.isfinite(vals).all():
                raise ValueError(f"GeneratorParams.{name}: weights must be >= 0 with a positive sum")

        _check_mix("acquisition_mix", self.acquisition_mix, ACQUISITIONS[:-1])
        _check_mix("advocacy_mix", self.advocacy_mix, STAGE_EVENTS["advocacy"])
        _check_mix("platform_weights", self.platform_weights, SOCIAL_PLATFORMS)
        _check_mix("ad_channel_mix", self.ad_channel_mix, ("social", "display", "search"))
        for name in ("sessions_per_episode", "session_gap_days", "extra_events_per_session"):
            pairs = dict(getattr(self, name))
            if set(pairs) != set(FUNNEL_STAGES):
                raise ValueError(f"GeneratorParams.{name}: needs one value per stage {FUNNEL_STAGES}")
            if any(v < 0 for v in pairs.values()):
                raise ValueError(f"GeneratorParams.{name}: values must be >= 0")
        if any(v < 1 for v in dict(self.sessions_per_episode).values()):
            raise ValueError("GeneratorParams.sessions_per_episode: means must be >= 1")
        for stage, pairs in self.event_weights:
            _check_mix(f"event_weights[{stage}]", pairs, EVENT_TYPES)
            if any(k in ("purchase", "onboarding") and v > 0 for k, v in pairs):
                raise ValueError("GeneratorParams.event_weights: purchase/onboarding are forced, not drawn")
        if {s for s, _ in self.event_weights} != set(FUNNEL_STAGES):
            raise ValueError("GeneratorParams.event_weights: needs one mix per funnel stage")
        sources = ("social",) + CHANNELS[4:]
        for stage, pairs in self.session_sources:
            _check_mix(f"session_sources[{stage}]", pairs, sources)
        if {s for s, _ in self.session_sources} != set(FUNNEL_STAGES):
            raise ValueError("GeneratorParams.session_sources: needs one mix per funnel stage")
        allowed_next = {
            "awareness": ("awareness", "consideration", "decision", "lapsed"),
            "consideration": ("awareness", "consideration", "decision", "lapsed"),
            "decision": ("awareness", "consideration", "decision", "retention", "lapsed"),
            "retention": ("retention", "advocacy", "lapsed"),
            "advocacy": ("retention", "advocacy", "lapsed"),
        }
        if {s for s, _ in self.transitions} != set(FUNNEL_STAGES):
            raise ValueError("GeneratorParams.transitions: needs one row per funnel stage")
        for stage, pairs in self.transitions:
            _check_mix(f"transitions[{stage}]", pairs, allowed_next[stage])
        for name in ("intent_effects", "loyalty_effects", "advocacy_effects"):
            for frm, to, _ in getattr(self, name):
                if frm not in FUNNEL_STAGES or to not in STAGES:
                    raise ValueError(f"GeneratorParams.{name}: unknown transition {frm}->{to}")
        for a, b in self.once_only_events:
            if a not in _ET or b not in _ET or EVENT_STAGE[a] != EVENT_STAGE[b]:
                raise ValueError(f"GeneratorParams.once_only_events: bad pair {a}->{b}")
        probs = (
            "referral_conversion_prob", "referral_share_cap", "intent_loyalty_corr",
            "loyalty_advocacy_corr", "return_to_awareness_prob", "abandon_add_to_cart_prob",
            "abandon_checkout_prob", "repeat_purchase_prob", "store_purchase_share",
            "preferred_platform_prob",
        )
        for name in probs:
            v = getattr(self, name)
            lo = -1.0 if name.endswith("_corr") else 0.0
            if not (lo <= v <= 1.0):
                raise ValueError(f"GeneratorParams.{name}: must be in [{lo}, 1], got {v}")
        for _, v in self.lapse_return_prob:
            if not 0 <= v <= 1:
                raise ValueError("GeneratorParams.lapse_return_prob: must be in [0, 1]")
        if self.activity_shape <= 0 or self.order_value_median <= 0:
            raise ValueError("GeneratorParams: activity_shape and order_value_median must be > 0")
        if self.campaigns_per_channel_month < 1:
            raise ValueError("GeneratorParams.campaigns_per_channel_month: must be >= 1")
        if len(self.hour_weights) != 24 or len(self.weekday_weights) != 7 or len(self.month_weights) != 12:
            raise ValueError("GeneratorParams: need 24 hour, 7 weekday and 12 month weights")
        for name in ("hour_weights", "weekday_weights", "month_weights"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"GeneratorParams.{name}: weights must be > 0")


def params_table(params: GeneratorParams | None = None) -> list[dict[str, Any]]:
    """``[{"name", "value", "doc", "source"}, ...]`` for every parameter (used by the docs)."""
    params = params or GeneratorParams()
    return [
        {
            "name": f.name,
            "value": getattr(params, f.name),
            "doc": f.metadata.get("doc", ""),
            "source": f.metadata.get("source", ""),
        }
        for f in dataclasses.fields(params)
    ]


# --------------------------------------------------------------------------------------------
# Output container
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Journeys:
    """Everything the simulator knows.

    - ``events``: the touchpoint log (same frame as :func:`generate_events`).
    - ``stages``: the latent stage path, one row per stage episode: ``customer_id``, ``stage``
      (including ``lapsed`` spells), ``start`` and ``end`` (the next episode's start, or the end
      of the period). Sorted by (customer_id, start).
    - ``customers``: one row per customer: ``customer_id``, ``acquisition``, ``referred_by``
      (customer_id or null), ``first_seen``, and the latent traits ``activity``, ``intent``,
      ``loyalty``, ``advocacy``, ``order_value`` (typical order value).
    """

    events: pd.DataFrame
    stages: pd.DataFrame
    customers: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Simulation internals
# --------------------------------------------------------------------------------------------


def _vec(pairs: Any, names: tuple[str, ...], normalise: bool = False) -> np.ndarray:
    d = dict(pairs)
    v = np.array([float(d.get(n, 0.0)) for n in names])
    return v / v.sum() if normalise else v


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p, axis=-1)
    c = c / c[..., -1:]
    c[..., -1] = 1.0 + 1e-12  # guard against u == 1 rounding
    return c


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


class _Tables:
    """Numeric lookup tables derived from a GeneratorParams."""

    def __init__(self, p: GeneratorParams) -> None:
        fs = FUNNEL_STAGES
        self.acq_p = _cdf(_vec(p.acquisition_mix, ACQUISITIONS, normalise=True))
        # acquisition -> (first stage, first event type, channel code or _SOCIAL)
        first = {
            "paid_social": (_A, "ad_impression", _SOCIAL),
            "influencer": (_A, "influencer_view", _CH["influencer"]),
            "organic_social": (_A, "organic_post_view", _SOCIAL),
            "search": (_C, "page_view", _CH["search"]),
            "display": (_A, "ad_impression", _CH["display"]),
            "direct": (_C, "page_view", _CH["direct"]),
            "referral": (_C, "page_view", _CH["referral"]),
        }
        self.acq_stage = np.array([first[a][0] for a in ACQUISITIONS], np.int8)
        self.acq_type = np.array([_ET[first[a][1]] for a in ACQUISITIONS], np.int8)
        self.acq_chan = np.array([first[a][2] for a in ACQUISITIONS], np.int8)

        self.sess_mean = np.append(_vec(p.sessions_per_episode, fs), 1.0)
        self.sess_gap = np.append(_vec(p.session_gap_days, fs), 1.0)
        self.extra = np.append(_vec(p.extra_events_per_session, fs), 0.0)

        ew = dict(p.event_weights)
        self.type_cdf = [_cdf(_vec(ew[s], EVENT_TYPES)) for s in fs]
        src_names = ("social",) + CHANNELS[4:]
        src_codes = np.array([_SOCIAL] + [_CH[c] for c in CHANNELS[4:]], np.int8)
        sw = dict(p.session_sources)
        self.src_cdf = [_cdf(_vec(sw[s], src_names)) for s in fs]
        self.src_codes = src_codes
        self.adv_cdf = _cdf(_vec(p.advocacy_mix, EVENT_TYPES))

        # transitions: base probability matrix [from, to] and effect matrices
        tr = dict(p.transitions)
        self.P = np.zeros((6, 6))
        for i, s in enumerate(fs):
            self.P[i] = _vec(tr[s], STAGES, normalise=True)
        self.EZ = np.zeros((6, 6))
        self.EL = np.zeros((6, 6))
        self.EA = np.zeros((6, 6))
        for mat, eff in ((self.EZ, p.intent_effects), (self.EL, p.loyalty_effects),
                         (self.EA, p.advocacy_effects)):
            for frm, to, v in eff:
                mat[STAGES.index(frm), STAGES.index(to)] += v
        self.EACT = np.zeros((6, 6))
        self.EACT[:5, _L] = p.activity_lapse_effect

        g = dict(p.transition_gap_days)
        G = np.full((6, 6), g["forward"])
        for i in range(3):
            for j in range(3):
                G[i, j] = g["forward"] if j > i else (g["stall"] if j == i else g["backward"])
        G[_D, _R] = g["purchase"]
        G[_R, _R] = g["retention"]
        G[_R, _V] = g["to_advocacy"]
        G[_V, _V] = g["to_advocacy"]
        G[_V, _R] = g["from_advocacy"]
        self.G = G

        lapse = dict(p.lapse_days)
        ret = dict(p.lapse_return_prob)
        self.lapse_mean = np.array([lapse["before_purchase"], lapse["after_purchase"]])
        self.ret_logit = np.array([_logit(ret["before_purchase"]), _logit(ret["after_purchase"])])

        # channels
        rule = np.zeros(len(EVENT_TYPES), np.int8)
        fixed = np.full(len(EVENT_TYPES), -1, np.int8)
        for e, (r, c) in _CHANNEL_RULES.items():
            rule[_ET[e]] = r
            if c is not None:
                fixed[_ET[e]] = _CH[c]
        self.rule, self.fixed = rule, fixed
        self.platform_cdf = _cdf(_vec(p.platform_weights, SOCIAL_PLATFORMS, normalise=True))
        self.ad_cdf = _cdf(_vec(p.ad_channel_mix, ("social", "display", "search"), normalise=True))
        self.ad_codes = np.array([_SOCIAL, _CH["display"], _CH["search"]], np.int8)

        order = np.zeros(len(EVENT_TYPES), np.int64)
        for i, e in enumerate(_SESSION_ORDER):
            order[_ET[e]] = i * _KEY_STEP
        self.order_key = order
        self.campaign_type = np.zeros(len(EVENT_TYPES), bool)
        self.campaign_type[[_ET[e] for e in CAMPAIGN_EVENTS]] = True
        self.once_only = [(_ET[a], _ET[b]) for a, b in p.once_only_events]


class _Clock:
    """Monotone map between wall time and *activity time* (both in days since start).

    Activity time runs at a constant rate; wall time is stretched at night and compressed in
    the evening, on busy weekdays and in busy months, so uniform activity produces the intraday,
    weekly and seasonal profile of ``hour_weights``/``weekday_weights``/``month_weights``.
    """

    def __init__(self, p: GeneratorParams, start: pd.Timestamp, days: float) -> None:
        hours = int(math.ceil(days * 24)) + 24
        t0 = np.datetime64(start.tz_convert("UTC").tz_localize(None).floor("h"), "h")
        bins = t0 + np.arange(hours)
        hod = (bins - bins.astype("datetime64[D]")).astype(np.int64)
        day = bins.astype("datetime64[D]").astype(np.int64)
        dow = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        month = bins.astype("datetime64[M]").astype(np.int64) % 12
        w = (
            np.asarray(p.hour_weights)[hod]
            * np.asarray(p.weekday_weights)[dow]
            * np.asarray(p.month_weights)[month]
        )
        w = w / w.mean()
        # knots in wall days measured from the (unfloored) start
        offset = (start.tz_convert("UTC").tz_localize(None) - start.tz_convert("UTC").tz_localize(None).floor("h")).total_seconds() / 86400.0
        kt = np.arange(hours + 1) / 24.0 - offset
        ku = np.concatenate([[0.0], np.cumsum(w) / 24.0])
        ku = ku - np.interp(0.0, kt, ku)
        # extend far to the right with slope 1 so activity times past the end stay monotone
        self.kt = np.append(kt, kt[-1] + 1e6)
        self.ku = np.append(ku, ku[-1] + 1e6)

    def to_activity(self, t: np.ndarray | float) -> np.ndarray:
        return np.interp(t, self.kt, self.ku)

    def to_wall(self, u: np.ndarray | float) -> np.ndarray:
        return np.interp(u, self.ku, self.kt)


def _seg_starts(counts: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(counts), np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _seg_cumsum(x: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of x within segments (x at segment starts should be 0)."""
    c = np.cumsum(x)
    return c - c[starts][owner]


def _categorical(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(cdf, rng.random(n), side="right")


class _Simulator:
    def __init__(self, n: int, seed: int, start: pd.Timestamp, days: float, p: GeneratorParams):
        self.n, self.p, self.days = n, p, float(days)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6A6F75726E6579]))
        self.tb = _Tables(p)
        self.clock = _Clock(p, start, days)
        self.u_end = float(self.clock.to_activity(self.days))
        self.end_sec = int(round(self.days * 86400))
        # per-customer (global index) data
        self.acq = np.zeros(n, np.int8)
        self.referred_by = np.full(n, -1, np.int64)
        self.arrival_sec = np.zeros(n, np.int64)
        self.act = np.ones(n)
        self.z = np.zeros(n)
        self.loy = np.zeros(n)
        self.adv = np.zeros(n)
        self.spend = np.zeros(n)
        self.pref = np.zeros(n, np.int8)
        self.drop = np.zeros(n)
        # outputs (lists of per-iteration chunks)
        self.ev: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "t", "type", "chan", "stage", "camp", "value")}
        self.st: dict[str, list[np.ndarray]] = {k: [] for k in ("cust", "stage", "t")}
        self.next_id = 0

    # ---------------- customers ----------------
    def _new_customers(self, k: int, arrival_days: np.ndarray, acq: np.ndarray,
                       referred_by: np.ndarray | None) -> np.ndarray:
        """Allocate k customers arriving at wall times arrival_days (sorted) and draw traits."""
        rng, p = self.rng, self.p
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
        self.pref[ix] = _categorical(rng, self.tb.platform_cdf, k)
        self.drop[ix] = p.dropout_sd * rng.standard_normal(k)
        return ix

    def run(self) -> None:
        p, rng, n = self.p, self.rng, self.n
        cap = int(round(n * p.referral_share_cap)) if n > 1 else 0
        n0 = n - cap
        budget = cap
        arr = np.sort(self.clock.to_wall(rng.random(n0) * self.u_end))
        acq = _categorical(rng, self.tb.acq_p, n0)
        ix = self._new_customers(n0, arr, acq, None)
        cand = self._simulate(ix)
        while budget > 0 and len(cand[0]):
            t_arr, referrer = cand
            if len(t_arr) > budget:
                pick = np.sort(rng.choice(len(t_arr), budget, replace=False))
                t_arr, referrer = t_arr[pick], referrer[pick]
            o = np.argsort(t_arr, kind="stable")
            t_arr, referrer = t_arr[o], referrer[o]
            k = len(t_arr)
            budget -= k
            ix = self._new_customers(k, t_arr, np.full(k, ACQUISITIONS.index("referral")), referrer)
            cand = self._simulate(ix)
        if budget > 0:
            arr = np.sort(self.clock.to_wall(rng.random(budget) * self.u_end))
            acq = _categorical(rng, self.tb.acq_p, budget)
            ix = self._new_customers(budget, arr, acq, None)
            self._simulate(ix)
        assert self.next_id == n

    # ---------------- one wave of customers ----------------
    def _simulate(self, gix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Simulate the journeys of customers gix; return referral candidates (arrival, referrer)."""
        tb = self.tb
        m0 = len(gix)
        stage = tb.acq_stage[self.acq[gix]].copy()
        u = self.clock.to_activity(self.arrival_sec[gix] / 86400.0 + 0.5 / 86400.0)
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

    def _transition(self, s: np.ndarray, g: np.ndarray, idle: np.ndarray) -> np.ndarray:
        tb, rng = self.tb, self.rng
        logw = (
            tb.EZ[s] * self.z[g][:, None]
            + tb.EL[s] * self.loy[g][:, None]
            + tb.EA[s] * self.adv[g][:, None]
            + tb.EACT[s] * np.log(self.act[g])[:, None]
        )
        logw[:, _L] += self.p.fatigue_lapse_effect * idle + self.drop[g]
        w = tb.P[s] * np.exp(logw)
        c = np.cumsum(w, axis=1)
        r = rng.random(len(s)) * c[:, -1]
        return (c < r[:, None]).sum(axis=1).astype(np.int8)

    def _resolve_social(self, ch: np.ndarray, cust_g: np.ndarray) -> np.ndarray:
        """Replace the _SOCIAL pseudo code by the customer's platform (or another one)."""
        m = ch == _SOCIAL
        k = int(m.sum())
        if k:
            rng = self.rng
            own = rng.random(k) < self.p.preferred_platform_prob
            other = _categorical(rng, self.tb.platform_cdf, k).astype(np.int8)
            ch[m] = np.where(own, self.pref[cust_g[m]], other)
        return ch

    def _episode(self, gix, act, stage, u, state, ref_t, ref_by) -> None:
        p, tb, rng = self.p, self.tb, self.rng
        m = len(act)
        g = gix[act]  # global customer ids
        s = stage[act].astype(np.int64)
        first = state["first"][act]
        conv = state["converted"][act]
        idle = state["idle"][act]
        nxt = self._transition(s, g, idle)
        slow = 1.0 + p.fatigue_gap_growth * idle  # interest fatigue thins activity out

        # ---- sessions ----
        n_sess = rng.geometric(1.0 / tb.sess_mean[s])
        S = int(n_sess.sum())
        c_start = _seg_starts(n_sess)
        own = np.repeat(np.arange(m), n_sess)
        k_gap = p.session_gap_shape
        gap = rng.gamma(k_gap, 1.0 / k_gap, S) * (tb.sess_gap[s] * slow / self.act[g])[own]
        gap[c_start] = 0.0
        sess_u = u[act][own] + _seg_cumsum(gap, c_start, own)
        sess_stage = s[own]
        last_sess = c_start + n_sess - 1
        sess_first_ever = np.zeros(S, bool)
        sess_first_ever[c_start[first]] = True

        # ---- events: random draws ----
        n_rand = rng.poisson(tb.extra[sess_stage]) + (~sess_first_ever)
        E0 = int(n_rand.sum())
        r_sess = np.repeat(np.arange(S), n_rand)
        r_stage = sess_stage[r_sess]
        r_type = np.empty(E0, np.int8)
        for st in range(5):
            mk = r_stage == st
            k = int(mk.sum())
            if k:
                r_type[mk] = _categorical(rng, tb.type_cdf[st], k)
        r_key = tb.order_key[r_type] + 1 + rng.integers(0, _KEY_JITTER, E0)

        # ---- events: forced by the funnel logic ----
        f_sess: list[np.ndarray] = []
        f_type: list[np.ndarray] = []
        f_key: list[np.ndarray] = []
        f_chan: list[np.ndarray] = []

        def force(sess: np.ndarray, etype: np.ndarray | int, key: np.ndarray | int,
                  chan: np.ndarray | int = -1) -> None:
            k = len(sess)
            if k == 0:
                return
            f_sess.append(sess)
            f_type.append(np.broadcast_to(np.asarray(etype, np.int8), (k,)))
            f_key.append(np.broadcast_to(np.asarray(key, np.int64), (k,)))
            f_chan.append(np.broadcast_to(np.asarray(chan, np.int8), (k,)))

        # acquisition: the first event of a customer's journey
        fs = c_start[first]
        a = self.acq[g[first]]
        force(fs, tb.acq_type[a], 0, tb.acq_chan[a])
        # decision episodes end with a purchase or an abandoned cart
        dec = s == _D
        buy = dec & (nxt == _R)
        ls = last_sess[buy]
        force(ls, _ET["add_to_cart"], tb.order_key[_ET["add_to_cart"]] + _KEY_JITTER)
        force(ls, _ET["begin_checkout"], _KEY_CHECKOUT)
        force(ls, _ET["purchase"], _KEY_PURCHASE)
        ab = dec & (nxt != _R)
        ls = last_sess[ab]
        cart = rng.random(len(ls)) < p.abandon_add_to_cart_prob
        force(ls[cart], _ET["add_to_cart"], tb.order_key[_ET["add_to_cart"]] + _KEY_JITTER)
        chk = cart & (rng.random(len(ls)) < p.abandon_checkout_prob / max(p.abandon_add_to_cart_prob, 1e-9))
        force(ls[chk], _ET["begin_checkout"], _KEY_CHECKOUT)
        # retention: onboarding after a first purchase, win-back after a lapse, repeat purchases
        onboard = state["onboard"][act]
        ob = c_start[onboard & (s == _R)]
        is_ret = sess_stage == _R
        is_ret[ob] = False  # the order-confirmation session is not a repeat purchase
        ret_sess = np.flatnonzero(is_ret)
        force(ob, _ET["email_open"], 0)
        force(ob, _ET["onboarding"], 1)
        wb = c_start[state["winback"][act] & (s == _R)]
        force(wb, _ET["email_click"], 0)
        repeat_buyer = np.zeros(m, bool)
        if len(ret_sess):
            gr = g[own[ret_sess]]
            prep = _sigmoid(_logit(p.repeat_purchase_prob) + 0.8 * self.loy[gr] + 0.4 * self.z[gr])
            rep = ret_sess[rng.random(len(ret_sess)) < prep]
            repeat_buyer = np.zeros(m, bool)
            repeat_buyer[own[rep]] = True
            force(rep, _ET["product_view"], tb.order_key[_ET["product_view"]])
            force(rep, _ET["add_to_cart"], tb.order_key[_ET["add_to_cart"]] + _KEY_JITTER)
            force(rep, _ET["begin_checkout"], _KEY_CHECKOUT)
            force(rep, _ET["purchase"], _KEY_PURCHASE)
        # advocacy episodes open with an advocacy event
        av = c_start[s == _V]
        if len(av):
            at = _categorical(rng, tb.adv_cdf, len(av)).astype(np.int8)
            force(av, at, tb.order_key[at])

        if f_sess:
            e_sess = np.concatenate([r_sess] + f_sess)
            e_type = np.concatenate([r_type] + f_type)
            e_key = np.concatenate([r_key] + f_key)
            e_fch = np.concatenate([np.full(E0, -1, np.int8)] + f_chan)
        else:
            e_sess, e_type, e_key, e_fch = r_sess, r_type, r_key, np.full(E0, -1, np.int8)
        order = np.argsort(e_sess * _KEY_SPAN + e_key, kind="stable")
        e_sess, e_type, e_fch = e_sess[order], e_type[order], e_fch[order]
        E = len(e_sess)
        e_own = own[e_sess]
        e_g = g[e_own]

        # ---- timestamps ----
        cnt = np.bincount(e_sess, minlength=S)
        e_start = _seg_starts(cnt)
        dt = rng.exponential(p.event_gap_minutes * 60.0, E)
        dt[e_start] = 0.0
        off = _seg_cumsum(dt, e_start, e_sess)
        sess_t = self.clock.to_wall(sess_u)  # wall days
        t_sec = np.floor(sess_t[e_sess] * 86400.0 + off).astype(np.int64)

        # ---- channels ----
        src = np.empty(S, np.int8)
        for st in range(5):
            mk = sess_stage == st
            k = int(mk.sum())
            if k:
                src[mk] = tb.src_codes[_categorical(rng, tb.src_cdf[st], k)]
        # the first session of a journey comes from the acquisition channel
        fsx = c_start[first]
        src[fsx] = tb.acq_chan[self.acq[g[first]]]
        src = self._resolve_social(src, g[own])  # one platform per session
        rule = tb.rule[e_type]
        chan = np.where(rule == _RULE_FIXED, tb.fixed[e_type], src[e_sess])
        adm = rule == _RULE_AD
        chan[adm] = tb.ad_codes[_categorical(rng, tb.ad_cdf, int(adm.sum()))]
        chan[rule == _RULE_SOCIAL] = _SOCIAL
        fo = (e_fch != -1) & (e_fch != _SOCIAL)
        chan[fo] = e_fch[fo]
        fso = e_fch == _SOCIAL  # social acquisition: the session's platform
        chan[fso] = src[e_sess[fso]]
        chan = self._resolve_social(chan, e_g)
        pur = np.flatnonzero(e_type == _ET["purchase"])
        store = pur[rng.random(len(pur)) < p.store_purchase_share]
        chan[store] = _CH["store"]

        # ---- values ----
        value = np.full(E, np.nan)
        if len(pur):
            v = self.spend[e_g[pur]] * np.exp(p.order_value_order_sigma * rng.standard_normal(len(pur)))
            value[pur] = np.round(v, 2)

        # ---- campaigns: code = (channel * months + month) * K + k ----
        camp = np.full(E, -1, np.int32)
        cm = np.flatnonzero(tb.campaign_type[e_type])
        if len(cm):
            month = self._month_index(t_sec[cm])
            K = p.campaigns_per_channel_month
            camp[cm] = (chan[cm].astype(np.int32) * self.n_months + month) * K + rng.integers(0, K, len(cm))

        # ---- latent stage path ----
        ep_t = np.floor(sess_t[c_start] * 86400.0).astype(np.int64)
        self.st["cust"].append(g)
        self.st["stage"].append(s.astype(np.int8))
        self.st["t"].append(ep_t)

        # ---- referrals bring new customers ----
        refm = e_type == _ET["referral"]
        if refm.any():
            rs = np.flatnonzero(refm & (t_sec < self.end_sec))
            ok = rs[rng.random(len(rs)) < p.referral_conversion_prob]
            # the friend's first visit comes at least a minute after the invitation
            arr = (t_sec[ok] + 60) / 86400.0 + rng.exponential(p.referral_delay_days, len(ok))
            keep = arr < self.days
            ref_t.append(arr[keep])
            ref_by.append(e_g[ok][keep])

        # ---- next episode ----
        cust_start = e_start[c_start]  # first event of each customer (events are grouped)
        last_t = np.maximum.reduceat(t_sec, cust_start)
        self._emit(e_g, t_sec, e_type, chan, sess_stage[e_sess], camp, value)

        last_u = sess_u[last_sess]
        pause = rng.exponential(size=m) * tb.G[s, nxt] * slow / self.act[g]
        new_u = last_u + p.min_transition_gap_hours / 24.0 + pause
        new_stage = nxt.copy()
        lap = nxt == _L  # (a returning customer starts afresh: counted as progress)
        if lap.any():
            li = np.flatnonzero(lap)
            lt = last_t[li] + 1
            okl = lt < self.end_sec
            self.st["cust"].append(g[li][okl])
            self.st["stage"].append(np.full(int(okl.sum()), _L, np.int8))
            self.st["t"].append(lt[okl])
            cv = conv[li]
            trait = np.where(cv, self.loy[g[li]], self.z[g[li]])
            pr = _sigmoid(self.tb.ret_logit[cv.astype(int)] + p.loyalty_return_effect * trait)
            back = rng.random(len(li)) < pr
            new_u[li] = last_u[li] + rng.exponential(size=len(li)) * self.tb.lapse_mean[cv.astype(int)]
            to_aw = rng.random(len(li)) < p.return_to_awareness_prob
            new_stage[li] = np.where(cv, _R, np.where(to_aw, _A, _C))
            state["alive"][act[li[~back]]] = False
            wbk = np.zeros(m, bool)
            wbk[li] = cv & back
        else:
            wbk = np.zeros(m, bool)
        bought = (s == _D) & (nxt == _R)
        state["converted"][act] = conv | bought
        state["onboard"][act] = bought
        state["winback"][act] = wbk
        state["first"][act] = False
        # interest fatigue: progress resets the count, going nowhere increments it
        progress = ((nxt > s) & (nxt != _L)) | repeat_buyer | (s == _V) | lap
        state["idle"][act] = np.where(progress, 0, np.minimum(idle + 1, 1000))
        stage[act] = new_stage
        u[act] = new_u

    def _emit(self, cust, t_sec, etype, chan, estage, camp, value) -> None:
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

    # month index (0..n_months-1) of wall seconds since start
    def _setup_months(self, start: pd.Timestamp) -> None:
        s0 = np.datetime64(start.tz_convert("UTC").tz_localize(None), "s")
        self.start_s = s0
        m0 = s0.astype("datetime64[M]")
        m1 = (s0 + np.timedelta64(self.end_sec, "s")).astype("datetime64[M]")
        self.month0 = m0
        self.n_months = int((m1 - m0).astype(np.int64)) + 1

    def _month_index(self, t_sec: np.ndarray) -> np.ndarray:
        ts = self.start_s + t_sec.astype("timedelta64[s]")
        return (ts.astype("datetime64[M]") - self.month0).astype(np.int64).clip(0, self.n_months - 1)


# --------------------------------------------------------------------------------------------
# Assembly of the output frames
# --------------------------------------------------------------------------------------------


def _str_dtype() -> pd.StringDtype:
    return pd.StringDtype("pyarrow", na_value=np.nan)


def _dict_to_str(codes: np.ndarray, names: list[str] | pa.Array, null_mask: np.ndarray | None = None) -> pd.arrays.ArrowStringArray:
    """Integer codes + dictionary -> pandas 'str' array, without Python-level loops."""
    dictionary = names if isinstance(names, pa.Array) else pa.array(names, type=pa.large_string())
    idx = pa.array(codes, mask=null_mask)
    arr = pa.DictionaryArray.from_arrays(idx, dictionary).cast(pa.large_string())
    return pd.array(arr, dtype=_str_dtype())


def _customer_ids(n: int) -> pa.Array:
    """'c0000001', 'c0000002', ... as an Arrow string array built from raw buffers."""
    width = max(7, len(str(n)))
    if n == 0:
        return pa.array([], type=pa.large_string())
    num = np.arange(1, n + 1, dtype=np.int64)
    digits = np.empty((n, width + 1), np.uint8)
    digits[:, 0] = ord("c")
    for j in range(width, 0, -1):
        digits[:, j] = ord("0") + num % 10
        num //= 10
    offsets = np.arange(0, (n + 1) * (width + 1), width + 1, dtype=np.int64)
    return pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes())]
    )


def _timestamps(start_s: np.datetime64, t_sec: np.ndarray) -> pd.arrays.DatetimeArray:
    us = (start_s.astype("datetime64[us]") + (t_sec * 1_000_000).astype("timedelta64[us]"))
    return pd.array(pd.DatetimeIndex(us).tz_localize("UTC"))


def _campaign_names(p: GeneratorParams, month0: np.datetime64, n_months: int) -> list[str]:
    K = p.campaigns_per_channel_month
    months = [(month0 + np.timedelta64(i, "M")).astype(str).replace("-", "") for i in range(n_months)]
    return [f"{c}_{mo}_{k + 1}" for c in CHANNELS for mo in months for k in range(K)]


def _parse_start(start: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(start)
    if ts is pd.NaT:
        raise ValueError(f"start: not a timestamp: {start!r}")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("s")


def _run(customers: int, seed: int, start: str, days: int, params: GeneratorParams | None,
         truth: bool) -> Journeys | pd.DataFrame:
    if isinstance(customers, bool) or not isinstance(customers, (int, np.integer)) or customers < 0:
        raise ValueError(f"customers: expected a non-negative integer, got {customers!r}")
    if not (isinstance(days, (int, float, np.integer, np.floating)) and days > 0):
        raise ValueError(f"days: expected a positive number, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    p = params if params is not None else GeneratorParams()
    if not isinstance(p, GeneratorParams):
        raise TypeError("params: expected a GeneratorParams")
    t0 = _parse_start(start)
    n = int(customers)
    sim = _Simulator(n, int(seed), t0, float(days), p)
    sim._setup_months(t0)
    sim.run()

    ev, sim.ev = sim.ev, {}

    def take(name: str, dtype: Any, order: np.ndarray | None = None) -> np.ndarray:
        """Concatenate (and release) the chunks of one column, optionally reordered."""
        chunks = ev.pop(name)
        col = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
        chunks.clear()
        return col if order is None else col[order]

    cat = np.concatenate
    cust = take("cust", np.int32)
    t_sec = take("t", np.int64)
    # customer ids are handed out in order of first touch
    rank = np.empty(n, np.int64)
    rank[np.argsort(sim.arrival_sec, kind="stable")] = np.arange(n)
    key_c = rank[cust]
    tbits = max(int(sim.end_sec + 1).bit_length(), 1)
    if n.bit_length() + tbits <= 62:
        order = np.argsort((key_c << tbits) | t_sec, kind="stable")
    else:  # pragma: no cover - astronomically large inputs
        order = np.lexsort((t_sec, key_c))
    del key_c
    key_c = rank[cust[order]]
    del cust
    t_sec = t_sec[order]
    etype = take("type", np.int8, order)
    chan = take("chan", np.int8, order)
    estage = take("stage", np.int8, order)
    camp = take("camp", np.int32, order)
    value = take("value", np.float64, order)
    del order

    # once-only events: keep the first per customer, later ones become the paired type
    for a, b in sim.tb.once_only:
        pos = np.flatnonzero(etype == a)
        if len(pos) > 1:
            c = key_c[pos]
            dup = np.zeros(len(pos), bool)
            dup[1:] = c[1:] == c[:-1]
            etype[pos[dup]] = b

    ids = _customer_ids(n)
    events = pd.DataFrame(
        {
            "customer_id": _dict_to_str(key_c, ids),
            "timestamp": _timestamps(sim.start_s, t_sec),
            "event_type": _dict_to_str(etype, list(EVENT_TYPES)),
            "channel": _dict_to_str(chan, list(CHANNELS)),
            "value": value,
            "campaign": _dict_to_str(
                np.maximum(camp, 0), _campaign_names(p, sim.month0, sim.n_months), camp < 0
            ),
            "true_stage": _dict_to_str(estage, list(STAGES)),
        },
        copy=False,
    )
    if not truth:
        return events

    st = sim.st
    s_c = rank[cat(st["cust"])] if st["cust"] else np.zeros(0, np.int64)
    s_t = cat(st["t"]) if st["t"] else np.zeros(0, np.int64)
    s_s = cat(st["stage"]) if st["stage"] else np.zeros(0, np.int8)
    o = np.lexsort((s_t, s_c))
    s_c, s_t, s_s = s_c[o], s_t[o], s_s[o]
    s_end = np.full(len(s_t), sim.end_sec, np.int64)
    same = np.zeros(len(s_t), bool)
    if len(s_t) > 1:
        same[:-1] = s_c[1:] == s_c[:-1]
        s_end[:-1] = np.where(same[:-1], s_t[1:], sim.end_sec)
    stages = pd.DataFrame(
        {
            "customer_id": _dict_to_str(s_c, ids),
            "stage": _dict_to_str(s_s, list(STAGES)),
            "start": _timestamps(sim.start_s, s_t),
            "end": _timestamps(sim.start_s, s_end),
        }
    )
    inv = np.argsort(rank)  # global index of the customer with each rank
    ref = sim.referred_by[inv]
    has_ref = ref >= 0
    customers_df = pd.DataFrame(
        {
            "customer_id": _dict_to_str(np.arange(n), ids),
            "acquisition": _dict_to_str(sim.acq[inv], list(ACQUISITIONS)),
            "referred_by": _dict_to_str(np.where(has_ref, rank[np.maximum(ref, 0)], 0), ids, ~has_ref),
            "first_seen": _timestamps(sim.start_s, sim.arrival_sec[inv]),
            "activity": sim.act[inv],
            "intent": sim.z[inv],
            "loyalty": sim.loy[inv],
            "advocacy": sim.adv[inv],
            "order_value": np.round(sim.spend[inv], 2),
        }
    )
    return Journeys(events=events, stages=stages, customers=customers_df)


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
