"""The names the synthetic generator speaks: stages, event types, channels and their codes.

Stages and event types come from the ``five_stage`` taxonomy
(``core/taxonomies/five_stage.toml``, read with :func:`journey_stage.core.taxonomy.load_taxonomy`):
:data:`STAGES`, :data:`STAGE_EVENTS`, :data:`EVENT_TYPES`, :data:`EVENT_STAGE` and
:data:`CONVERSION_EVENTS` are derived from it, never written out here. The order of the event
types in that file (stage by stage, event by event) fixes the integer code of every event type,
and with it the order of the generator's categorical draws: reordering the file changes the
generated journeys.

What the taxonomy does not know is kept here, keyed by event type: how the channel of an event is
chosen (:data:`CHANNEL_RULES`), which events carry a campaign (:data:`CAMPAIGN_EVENTS`) and the
funnel order of event types inside a session (:data:`SESSION_ORDER`). Channels, acquisition
routes and the output columns are the generator's own.
"""

from __future__ import annotations

from journey_stage.core.taxonomy import ROLES, load_taxonomy

# --------------------------------------------------------------------------------------------
# Taxonomy (the `five_stage` preset of SPEC section 3)
# --------------------------------------------------------------------------------------------

_TAXONOMY = load_taxonomy("five_stage")

#: The five funnel stages in funnel order, then ``lapsed``.
STAGES: tuple[str, ...] = tuple(_TAXONOMY.stages)
FUNNEL_STAGES: tuple[str, ...] = STAGES[:5]
#: Integer codes of :data:`STAGES` (V = advocacy, L = lapsed).
STAGE_A, STAGE_C, STAGE_D, STAGE_R, STAGE_V, STAGE_L = range(6)

#: Event types of each funnel stage, in the order of the taxonomy file.
STAGE_EVENTS: dict[str, tuple[str, ...]] = {
    _TAXONOMY.role_stage[role]: tuple(e for e, r in _TAXONOMY.event_role.items() if r == role)
    for role in ROLES
}
EVENT_TYPES: tuple[str, ...] = tuple(e for s in FUNNEL_STAGES for e in STAGE_EVENTS[s])
EVENT_STAGE: dict[str, str] = {e: s for s in FUNNEL_STAGES for e in STAGE_EVENTS[s]}
CONVERSION_EVENTS: tuple[str, ...] = tuple(sorted(_TAXONOMY.conversion_events))

# --------------------------------------------------------------------------------------------
# Channels, acquisition routes and output columns
# --------------------------------------------------------------------------------------------

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

EVENT_CODE: dict[str, int] = {e: i for i, e in enumerate(EVENT_TYPES)}
CHANNEL_CODE: dict[str, int] = {c: i for i, c in enumerate(CHANNELS)}
SOCIAL_CODE = -2  # pseudo channel code: "the customer's social platform", resolved per event

# --------------------------------------------------------------------------------------------
# Per-event-type extras the taxonomy does not carry
# --------------------------------------------------------------------------------------------

# Channel rule per event type: how the channel of an event is chosen.
RULE_SESSION, RULE_SOCIAL, RULE_AD, RULE_FIXED = 0, 1, 2, 3
#: Event types whose channel is not their session's traffic source (RULE_SESSION): every event
#: type not listed here (page_view, product_view, add_to_cart, purchase, repeat_visit,
#: review_written, ...) carries the source of its session; purchase may also be "store"
#: (store_purchase_share).
CHANNEL_RULES: dict[str, tuple[int, str | None]] = {
    # paid ads run on social platforms, display networks and search
    "ad_impression": (RULE_AD, None),
    "ad_click": (RULE_AD, None),
    # social events happen on a social platform (mostly the customer's preferred one)
    "social_view": (RULE_SOCIAL, None),
    "social_follow": (RULE_SOCIAL, None),
    "hashtag_view": (RULE_SOCIAL, None),
    "organic_post_view": (RULE_SOCIAL, None),
    "share": (RULE_SOCIAL, None),
    "ugc_post": (RULE_SOCIAL, None),
    # events with a channel of their own
    "influencer_view": (RULE_FIXED, "influencer"),
    "webinar": (RULE_FIXED, "email"),
    "email_open": (RULE_FIXED, "email"),
    "email_click": (RULE_FIXED, "email"),
    "onboarding": (RULE_FIXED, "email"),
    "support_presale": (RULE_FIXED, "support"),
    "support_contact": (RULE_FIXED, "support"),
    "referral": (RULE_FIXED, "referral"),
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

#: Order of event types inside a session (funnel order; random events get jitter around it).
SESSION_ORDER: tuple[str, ...] = (
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
KEY_STEP = 64  # sort key = rank * 64 + jitter
KEY_JITTER = 150  # random events may swap with neighbours up to ~2 ranks away
KEY_CHECKOUT = 4094
KEY_PURCHASE = 4095
KEY_SPAN = 4096


def _check_against_taxonomy() -> None:
    """The generator's stage logic and per-event extras must fit the taxonomy file."""
    if FUNNEL_STAGES != ROLES or STAGES[5:] != ("lapsed",):
        raise RuntimeError(f"five_stage taxonomy: expected the stages {ROLES} + lapsed, got {STAGES}")
    unknown = sorted((set(CHANNEL_RULES) | set(CAMPAIGN_EVENTS) | set(CONVERSION_EVENTS)) - set(EVENT_TYPES))
    if unknown or sorted(SESSION_ORDER) != sorted(EVENT_TYPES):
        raise RuntimeError(
            "five_stage taxonomy and synthetic/vocabulary.py disagree on the event types: "
            f"unknown {unknown}, session order {sorted(set(SESSION_ORDER) ^ set(EVENT_TYPES))}"
        )


_check_against_taxonomy()
