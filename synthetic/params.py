"""The parameters of the synthetic journey generator: :class:`GeneratorParams` and :func:`params_table`.

This module is essentially data: one frozen dataclass whose every field carries its default, what
it means and where the default comes from (``dataclasses.fields(GeneratorParams)[i].metadata``,
rendered in ``docs/generator.md``). That parameter table is why it is longer than the other
modules of the package; the only logic is :func:`params_table`, and validation lives in
:mod:`journey_stage.synthetic.checks`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from journey_stage.synthetic.checks import check_params

__all__ = ["GeneratorParams", "params_table"]


def _f(default: Any, doc: str, source: str) -> Any:
    """A dataclass field with its documentation and the source of its default."""
    return field(default=default, metadata={"doc": doc, "source": source})


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
        """Raise ``ValueError`` on inconsistent or out-of-range values (see ``checks``)."""
        check_params(self)


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
