"""Chip (籌碼) factor definitions — the single registry entry for each factor this module computes.

Missing-rate thresholds are set for reality as well as the demo: flows and big-holder shares exist for
every traded stock (T86 omits stocks no institution traded, which `compute` reads as zero net), so their
thresholds are tight; margin factors are missing for stocks not eligible for margin trading (new
listings for their first six months, full-delivery stocks, many ETFs — up to ≈30 % of the universe).
Percent-of-volume factors are bounded by construction: an institution's net buy cannot exceed the
shares traded, so the ratio lies in [−100, 100].
"""

from __future__ import annotations

from qrl_platform.factors import Factor

MODULE = "M09"

# Longest consecutive-buy streak reported; a longer streak reads as this many days. Capping keeps the
# value independent of how much history a run happens to read (the streak needs this many prior days).
TRUST_STREAK_CAP = 60

_WHO = {
    "foreign": ("Foreign investors", "foreign & mainland investors excluding foreign dealers"),
    "trust": ("Investment trusts", "investment trusts (投信)"),
    "dealer": ("Dealers", "dealers, proprietary and hedging (自營商)"),
}
_FLOW_MISSING = 0.1  # suspended stocks are outside the universe; this covers new listings' first days


def _flow_factor(who: str, days: int) -> Factor:
    title, explained = _WHO[who]
    window = "the day" if days == 1 else f"the last {days} trading days"
    return Factor(
        factor_id=f"{who}_net_pct_{days}",
        module=MODULE,
        name=f"{title} net buy, % of volume, {days}d",
        description=f"Net buy in shares of {explained} summed over {window}, divided by the volume traded over "
        "the same days, × 100. Null when no shares traded in the window (suspension) or during warm-up.",
        unit="% of volume",
        lookback=days - 1,
        source_columns=(f"institutional_flows.{who}_net", "daily_quotes.volume"),
        min_value=-100.0,
        max_value=100.0,
        max_missing_rate=_FLOW_MISSING,
        tags=("flow", who),
    )


_MARGIN_MISSING = 0.35  # stocks not eligible for margin trading have no margin row at all
# MI_MARGN / TPEx margin for day D come out around 21:00 Taipei, after the 16:35 strategies: margin
# factors for D use the margin of the previous trading day (and D's margin feeds D+1).
MARGIN_LAG_DAYS = 1

CHIP_FACTORS: tuple[Factor, ...] = (
    *(_flow_factor(who, days) for who in ("foreign", "trust", "dealer") for days in (1, 5, 20)),
    Factor(
        factor_id="trust_buy_streak",
        module=MODULE,
        name="Investment-trust consecutive net-buy days",
        description="Consecutive trading days up to and including the day on which investment trusts were net "
        f"buyers (trust_net > 0); 0 when the day's trust_net ≤ 0. Capped at {TRUST_STREAK_CAP}.",
        unit="days",
        lookback=TRUST_STREAK_CAP,
        source_columns=("institutional_flows.trust_net",),
        min_value=0.0,
        max_value=float(TRUST_STREAK_CAP),
        max_missing_rate=_FLOW_MISSING,
        tags=("flow", "trust"),
    ),
    Factor(
        factor_id="margin_utilization",
        module=MODULE,
        name="Margin utilisation",
        description="Margin purchase balance divided by the margin limit (融資使用率), × 100, from the previous "
        "trading day's margin (published the evening before).",
        unit="%",
        lookback=MARGIN_LAG_DAYS,
        source_columns=("margin_balances.margin_balance", "margin_balances.margin_limit"),
        min_value=0.0,
        # The limit is set periodically; a balance can sit slightly above a freshly lowered limit.
        max_value=105.0,
        max_missing_rate=_MARGIN_MISSING,
        tags=("margin",),
        lag_days=MARGIN_LAG_DAYS,
    ),
    Factor(
        factor_id="short_margin_ratio",
        module=MODULE,
        name="Short-to-margin ratio (券資比)",
        description="Short-sale balance divided by margin purchase balance, × 100, from the previous trading "
        "day's margin. Null when the margin balance is 0. No upper bound: heavily shorted stocks exceed 100 %.",
        unit="%",
        lookback=MARGIN_LAG_DAYS,
        source_columns=("margin_balances.short_balance", "margin_balances.margin_balance"),
        min_value=0.0,
        max_missing_rate=_MARGIN_MISSING,
        tags=("margin",),
        lag_days=MARGIN_LAG_DAYS,
    ),
    *(
        Factor(
            factor_id=f"margin_change_{days}",
            module=MODULE,
            name=f"Margin balance change, {days}d",
            description=f"Percent change of the margin purchase balance over {days} trading days, ending with the "
            "previous trading day's margin. Null when the earlier balance is 0 or unknown.",
            unit="%",
            lookback=days + MARGIN_LAG_DAYS,
            source_columns=("margin_balances.margin_balance",),
            min_value=-100.0,
            max_missing_rate=_MARGIN_MISSING,
            tags=("margin",),
            lag_days=MARGIN_LAG_DAYS,
        )
        for days in (5, 20)
    ),
    Factor(
        factor_id="big_holder_pct",
        module=MODULE,
        name="Big-holder share (> 400 lots)",
        description="Percent of shares held by holders of more than 400 lots (TDCC levels 12–15), from the latest "
        "weekly distribution published on or before the day; null when that week is more than 21 days old.",
        unit="% of shares",
        lookback=0,
        source_columns=(
            "shareholding_distribution.pct",
            "shareholding_distribution.level",
            "shareholding_distribution.published_on",
        ),
        min_value=0.0,
        max_value=100.0,
        max_missing_rate=0.1,
        tags=("holders",),
    ),
    Factor(
        factor_id="big_holder_pct_change_1w",
        module=MODULE,
        name="Big-holder share, weekly change",
        description="big_holder_pct of the latest published week minus that of the week before (within 14 "
        "days), in percentage points.",
        unit="pp",
        lookback=0,
        source_columns=(
            "shareholding_distribution.pct",
            "shareholding_distribution.level",
            "shareholding_distribution.published_on",
        ),
        min_value=-100.0,
        max_value=100.0,
        max_missing_rate=0.15,
        tags=("holders",),
    ),
)
