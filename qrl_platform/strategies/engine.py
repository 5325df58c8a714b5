"""Evaluate strategy definitions over a wide factor frame (one or many days), vectorised with polars.

The frame has one row per (stock_id, trade_date) from daily_quotes (market, close, volume_lots,
is_etf, is_suspended) with every technical, fundamental and chip factor joined in. Each strategy is one lazy polars
query over it — universe filter, rule values, score, signal, confidence — with cross-sectional
transforms computed per day via `.over("trade_date")`, so one day and a year of days cost the same
code path (a backfill is one pass, not N). Each strategy is isolated: one that raises is recorded as
FAILED, one that exceeds its time limit is stopped and recorded as TIMEOUT, and the others still run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import polars as pl

from qrl_platform.strategies import isolation
from qrl_platform.strategies.definition import (
    CROSS_OPS,
    MARKET_TYPES,
    TRADABILITY_EXCLUSIONS,
    Condition,
    Rule,
    ScoredTerm,
    StrategyDefinition,
    Universe,
)

KEYS = ("stock_id", "trade_date")
QUOTE_FIELDS = ("market", "close", "volume_lots", "is_etf", "is_suspended")
SIGNALS_SCHEMA = {
    "strategy_id": pl.Utf8,
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "signal": pl.Utf8,
    "confidence": pl.Float64,
    "score": pl.Float64,
    "factor_values": pl.Utf8,
}
PER_DAY_SCHEMA = {
    "trade_date": pl.Date,
    "stocks_evaluated": pl.Int64,
    "signals_generated": pl.Int64,
    "buy_signals": pl.Int64,
    "sell_signals": pl.Int64,
    "hold_signals": pl.Int64,
    "insufficient_data": pl.Int64,
}
# Scores are weighted averages of a few terms; rounding removes float noise such as 2/3 stored as
# 0.66666666666666663 so a threshold written as 0.6666666667 behaves as the author expects.
SCORE_DECIMALS = 10
FACTOR_VALUE_DIGITS = 8


# ------------------------------------------------------------------------------------- the frame
def build_frame(quotes: pl.DataFrame, indicators: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Join the day(s)' quotes with the indicator frames into one wide frame of Float64 factors.

    daily_quotes defines the rows (the universe comes from it); a stock missing from an indicator
    frame gets nulls. NaN and ±inf become null so a bad value makes a rule unavailable instead of
    silently comparing false (NaN) or dominating a z-score (inf).
    """
    base = quotes.select(
        pl.col("stock_id").cast(pl.Utf8),
        pl.col("trade_date").cast(pl.Date),
        pl.col("market").cast(pl.Utf8),
        pl.col("close").cast(pl.Float64),
        (pl.col("volume").cast(pl.Float64) / 1000.0).alias("volume_lots"),
        pl.col("is_etf").cast(pl.Boolean),
        pl.col("is_suspended").cast(pl.Boolean),
    )
    for frame in indicators:
        if frame.is_empty():
            continue
        extra = [c for c in frame.columns if c not in base.columns]
        if not extra:
            continue
        factors = frame.select(
            pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date), *[pl.col(c) for c in extra]
        )
        base = base.join(factors, on=list(KEYS), how="left")
    numeric = [c for c, t in base.schema.items() if c not in KEYS and c not in QUOTE_FIELDS and t.is_numeric()]
    return base.with_columns(
        pl.when(pl.col(c).cast(pl.Float64).is_finite()).then(pl.col(c).cast(pl.Float64)).alias(c) for c in numeric
    )


def previous_day_column(field_name: str) -> str:
    """Name of the column holding `field_name` on the stock's previous trading day."""
    return f"{field_name}@prev"


def with_previous_day(
    frame: pl.DataFrame, dates: Sequence[dt.date], previous: Mapping[dt.date, dt.date], fields: Sequence[str]
) -> pl.DataFrame:
    """The rows of `dates` with `<field>@prev` columns: each stock's value on `previous[date]`.

    `frame` must also hold the previous days' rows (they are dropped from the result). A stock without a
    row or a value that day (newly listed, suspended) gets null, which makes a cross rule unavailable.
    """
    days = pl.DataFrame({"trade_date": list(dates), "_previous": [previous[d] for d in dates]}, schema=_DAY_PAIRS)
    lagged = frame.select(
        "stock_id",
        pl.col("trade_date").alias("_previous"),
        *[pl.col(f).alias(previous_day_column(f)) for f in fields],
    )
    return (
        frame.join(days, on="trade_date", how="inner")
        .join(lagged, on=["stock_id", "_previous"], how="left")
        .drop("_previous")
    )


_DAY_PAIRS = {"trade_date": pl.Date, "_previous": pl.Date}


# ------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class UniverseOverride:
    """Run-level universe options (the job's `stock_universe`); None keeps each strategy's own."""

    market_type: str | None = None
    min_volume_lots: float | None = None
    exclude_etf: bool | None = None
    exclude_suspended: bool | None = None

    def __post_init__(self) -> None:
        if self.market_type is not None and self.market_type not in MARKET_TYPES:
            raise ValueError(f"market_type must be one of {'/'.join(MARKET_TYPES)}, got {self.market_type!r}")
        if self.min_volume_lots is not None and self.min_volume_lots < 0:
            raise ValueError(f"min_volume must be >= 0 lots, got {self.min_volume_lots}")

    def apply(self, universe: Universe) -> Universe:
        changes = {k: v for k, v in self.__dict__.items() if v is not None}
        return replace(universe, **changes) if changes else universe


@dataclass(frozen=True)
class RunOptions:
    include_factor_values: bool = True
    include_diagnostics: bool = True
    save_all_signals: bool = True  # False: keep BUY/SELL rows only
    universe: UniverseOverride = field(default_factory=UniverseOverride)


# ------------------------------------------------------------------------------------- expressions
def universe_filter(universe: Universe) -> pl.Expr:
    condition = pl.lit(True)
    if universe.market_type != "ALL":
        condition &= pl.col("market") == universe.market_type
    if universe.min_volume_lots > 0:
        condition &= pl.col("volume_lots") >= universe.min_volume_lots
    if universe.exclude_etf:
        condition &= ~pl.col("is_etf").fill_null(False)
    if universe.exclude_suspended:
        condition &= ~pl.col("is_suspended").fill_null(False)
    for flag, column in TRADABILITY_EXCLUSIONS.items():
        if getattr(universe, flag):
            condition &= ~pl.col(column).fill_null(False)
    return condition


def require_tradability(strategy_id: str, universe: Universe, frame: pl.DataFrame, dates: Sequence[dt.date]) -> None:
    """A universe that excludes on tradability needs the `tradability` rows of every day it runs:
    without them nothing would be excluded and nobody would know."""
    columns = [column for flag, column in TRADABILITY_EXCLUSIONS.items() if getattr(universe, flag)]
    if not columns:
        return
    if any(column not in frame.columns for column in columns):
        known: set[dt.date] = set()
    else:
        known = set(frame.filter(pl.col(columns[0]).is_not_null()).get_column("trade_date").unique().to_list())
    missing = sorted(set(dates) - known)
    present = set(frame.get_column("trade_date").unique().to_list())
    missing = [d for d in missing if d in present]  # days without quotes have nothing to exclude
    if missing:
        raise ValueError(
            f"{strategy_id}: universe excludes on {', '.join(columns)} but tradability is not materialised for "
            f"{', '.join(str(d) for d in missing[:5])}{' …' if len(missing) > 5 else ''}; materialise tradability first"
        )


def rule_value(rule: Rule) -> pl.Expr:
    """The rule's value in [0, 1] per row, or null when its inputs are missing."""
    x = pl.col(rule.factor)
    if isinstance(rule, Condition):
        if rule.op in CROSS_OPS:
            return _crossed(rule)
        if rule.op == "between":
            lo, hi = rule.value  # type: ignore[misc]
            passed = x.is_between(lo, hi, closed="both")
        else:
            rhs = pl.col(rule.other) * rule.scale if rule.other else pl.lit(rule.value)
            passed = {">": x > rhs, ">=": x >= rhs, "<": x < rhs, "<=": x <= rhs}[rule.op]
        return passed.cast(pl.Float64)
    value = _scored_value(rule, x)
    return 1.0 - value if rule.direction == "lower" else value


def _crossed(rule: Condition) -> pl.Expr:
    """1 when the factor went from at-or-below the other side (previous day) to above it (today), for
    cross_above; mirrored for cross_below. Null when any of the four values is missing."""

    def sides(column: Callable[[str], str]) -> tuple[pl.Expr, pl.Expr]:
        rhs = pl.col(column(rule.other)) * rule.scale if rule.other else pl.lit(rule.value)
        return pl.col(column(rule.factor)), rhs

    x, rhs = sides(lambda name: name)
    x_before, rhs_before = sides(previous_day_column)
    if rule.op == "cross_above":
        now, before = x > rhs, x_before <= rhs_before
    else:
        now, before = x < rhs, x_before >= rhs_before
    # A product, not `&`: Kleene logic would turn (false & null) into false instead of "unavailable".
    return now.cast(pl.Float64) * before.cast(pl.Float64)


def _scored_value(term: ScoredTerm, x: pl.Expr) -> pl.Expr:
    present_half = pl.when(x.is_not_null()).then(pl.lit(0.5))
    if term.transform == "rank":
        # Percentile among the day's universe: lowest 0, highest 1, ties share their average rank.
        n = x.count().over("trade_date")
        rank = x.rank("average").over("trade_date")
        return pl.when(n > 1).then((rank - 1.0) / (n - 1.0)).otherwise(present_half)
    if term.transform == "zscore":
        mean = x.mean().over("trade_date")
        std = x.std(ddof=0).over("trade_date")
        z = ((x - mean) / std).clip(-3.0, 3.0)
        return pl.when(std > 0).then((z + 3.0) / 6.0).otherwise(present_half)
    lo, hi = term.bounds  # type: ignore[misc]
    return (x.clip(lo, hi) - lo) / (hi - lo)


def score_expr(definition: StrategyDefinition) -> pl.Expr:
    """Weighted average of the available rule values; null below the strategy's min_coverage."""
    rules = [rule for rule in definition.rules if rule.weight > 0]
    total = sum(rule.weight for rule in rules)
    values = [rule_value(rule) for rule in rules]
    available = pl.sum_horizontal(
        [pl.when(v.is_not_null()).then(pl.lit(r.weight)).otherwise(0.0) for v, r in zip(values, rules, strict=True)]
    )
    weighted = pl.sum_horizontal([v * r.weight for v, r in zip(values, rules, strict=True)])
    needed = definition.signal.min_coverage * total - 1e-12
    return pl.when((available > 0) & (available >= needed)).then((weighted / available).round(SCORE_DECIMALS))


def exit_expr(definition: StrategyDefinition) -> pl.Expr:
    """True where every exit condition holds; a condition with a missing input does not hold."""
    if not definition.exit:
        return pl.lit(False)
    return pl.all_horizontal([rule_value(condition).fill_null(0.0) == 1.0 for condition in definition.exit])


def signal_exprs(definition: StrategyDefinition) -> tuple[pl.Expr, pl.Expr]:
    """(signal, confidence) from the `score` column and the exit conditions.

    SELL when the exit holds or score <= sell_below; else BUY when score >= buy_above; else HOLD.
    Confidence grows linearly across `confidence_range` with how far the score is past the
    threshold, relative to the room left: BUY from buy_above (low) to 1 (high); SELL from sell_below
    to 0 (an exit SELL above sell_below: 1 - score, the weaker the entry setup the surer the exit);
    HOLD from the edge of the hold band to its middle.
    """
    mapping = definition.signal
    buy, sell = mapping.buy_above, mapping.sell_below
    score = pl.col("score")
    exiting = exit_expr(definition)
    signal = pl.lit("HOLD")
    if buy is not None:
        signal = pl.when(score >= buy).then(pl.lit("BUY")).otherwise(signal)
    below_sell = score <= sell if sell is not None else pl.lit(False)
    signal = pl.when(exiting | below_sell).then(pl.lit("SELL")).otherwise(signal)
    buy_frac = (score - buy) / (1.0 - buy) if buy is not None and buy < 1 else pl.lit(1.0)
    threshold_frac = (sell - score) / sell if sell is not None and sell > 0 else pl.lit(1.0)
    sell_frac = pl.when(below_sell).then(threshold_frac).otherwise(1.0 - score)
    band_lo = sell if sell is not None else 0.0
    band_hi = buy if buy is not None else 1.0
    middle, half = (band_lo + band_hi) / 2.0, (band_hi - band_lo) / 2.0
    hold_frac = 1.0 - (score - middle).abs() / half
    frac = (pl.when(signal == "BUY").then(buy_frac).when(signal == "SELL").then(sell_frac).otherwise(hold_frac)).clip(
        0.0, 1.0
    )
    low, high = mapping.confidence_range
    confidence = (low + (high - low) * frac).clip(0.0, 1.0).round(6)
    return signal.alias("signal"), confidence.alias("confidence")


# ------------------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    signals: pl.DataFrame  # SIGNALS_SCHEMA (factor_values null unless asked)
    per_day: pl.DataFrame  # PER_DAY_SCHEMA, one row per requested date
    diagnostics: dict[dt.date, dict] = field(default_factory=dict)


def evaluate_strategy(
    definition: StrategyDefinition, frame: pl.DataFrame, dates: Sequence[dt.date], options: RunOptions = RunOptions()
) -> Evaluation:
    """Signals of one strategy over every date in `frame` (raises on any error; the caller isolates)."""
    universe = options.universe.apply(definition.universe)
    require_tradability(definition.strategy_id, universe, frame, dates)
    fields = definition.fields()
    absent = [c for c in map(previous_day_column, definition.previous_day_fields()) if c not in frame.columns]
    if absent:
        raise ValueError(
            f"{definition.strategy_id}: its cross rules need the previous trading day's values ({', '.join(absent)}); "
            "build the frame with engine.with_previous_day"
        )
    scored = (
        frame.lazy()
        .filter(universe_filter(universe))
        .with_columns(score_expr(definition).alias("score"))
        .with_columns(*signal_exprs(definition))
    )
    if options.include_factor_values:
        # 8 significant digits: indicator values carry float noise beyond that, and the JSON is about
        # half of every stored signal row (a year is ~4M rows), so the noise is worth dropping.
        values = [pl.col(f).round_sig_figs(FACTOR_VALUE_DIGITS) for f in fields]
        scored = scored.with_columns(pl.struct(values).struct.json_encode().alias("factor_values"))
    else:
        scored = scored.with_columns(pl.lit(None, dtype=pl.Utf8).alias("factor_values"))
    previous = [previous_day_column(f) for f in definition.previous_day_fields()]
    evaluated = scored.select(*KEYS, "score", "signal", "confidence", "factor_values", *fields, *previous).collect()

    signals = evaluated.filter(pl.col("score").is_not_null())
    if not options.save_all_signals:
        signals = signals.filter(pl.col("signal") != "HOLD")
    signals = signals.select(
        pl.lit(definition.strategy_id).alias("strategy_id"), *KEYS, "signal", "confidence", "score", "factor_values"
    ).cast(SIGNALS_SCHEMA)

    per_day = _per_day(evaluated, signals, dates)
    diagnostics = _diagnostics(definition, universe, frame, evaluated, dates) if options.include_diagnostics else {}
    return Evaluation(signals=signals, per_day=per_day, diagnostics=diagnostics)


def _per_day(evaluated: pl.DataFrame, signals: pl.DataFrame, dates: Sequence[dt.date]) -> pl.DataFrame:
    calendar = pl.DataFrame({"trade_date": list(dates)}, schema={"trade_date": pl.Date})
    universe = evaluated.group_by("trade_date").agg(
        pl.len().alias("stocks_evaluated"), pl.col("score").is_null().sum().alias("insufficient_data")
    )
    counts = signals.group_by("trade_date").agg(
        pl.len().alias("signals_generated"),
        (pl.col("signal") == "BUY").sum().alias("buy_signals"),
        (pl.col("signal") == "SELL").sum().alias("sell_signals"),
        (pl.col("signal") == "HOLD").sum().alias("hold_signals"),
    )
    out = calendar.join(universe, on="trade_date", how="left").join(counts, on="trade_date", how="left")
    return out.select(list(PER_DAY_SCHEMA)).fill_null(0).cast(PER_DAY_SCHEMA).sort("trade_date")


def _diagnostics(
    definition: StrategyDefinition,
    universe: Universe,
    frame: pl.DataFrame,
    evaluated: pl.DataFrame,
    dates: Sequence[dt.date],
) -> dict[dt.date, dict]:
    """Per day: why stocks left the universe, each rule's data availability and pass rate, the scores."""
    excluded = frame.group_by("trade_date").agg(
        pl.len().alias("quotes"),
        (pl.col("market") != universe.market_type).sum().alias("other_market")
        if universe.market_type != "ALL"
        else pl.lit(0).alias("other_market"),
        (pl.col("volume_lots").fill_null(0.0) < universe.min_volume_lots).sum().alias("below_min_volume"),
        pl.col("is_etf").fill_null(False).sum().alias("etf"),
        pl.col("is_suspended").fill_null(False).sum().alias("suspended"),
    )
    rules = [rule for rule in definition.rules if rule.weight > 0]
    rule_stats = (
        evaluated.lazy()
        .with_columns(rule_value(rule).alias(f"__rule_{i}") for i, rule in enumerate(rules))
        .group_by("trade_date")
        .agg(
            *[pl.col(f"__rule_{i}").count().alias(f"available_{i}") for i in range(len(rules))],
            *[pl.col(f"__rule_{i}").mean().alias(f"mean_{i}") for i in range(len(rules))],
            pl.col("score").min().alias("score_min"),
            pl.col("score").median().alias("score_median"),
            pl.col("score").max().alias("score_max"),
            pl.col("score").is_null().sum().alias("insufficient_data"),
            pl.len().alias("universe_size"),
        )
        .collect()
    )
    by_day_excluded = {row["trade_date"]: row for row in excluded.iter_rows(named=True)}
    by_day_rules = {row["trade_date"]: row for row in rule_stats.iter_rows(named=True)}
    out: dict[dt.date, dict] = {}
    for date in dates:
        ex = by_day_excluded.get(date, {})
        st = by_day_rules.get(date, {})
        out[date] = {
            "universe": universe.__dict__,
            "quotes": ex.get("quotes", 0),
            "excluded": {k: ex.get(k, 0) for k in ("other_market", "below_min_volume", "etf", "suspended")},
            "universe_size": st.get("universe_size", 0),
            "insufficient_data": st.get("insufficient_data", 0),
            "rules": [
                {
                    "rule": rule.describe(),
                    "weight": rule.weight,
                    "available": st.get(f"available_{i}", 0),
                    "mean_value": _round(st.get(f"mean_{i}")),
                }
                for i, rule in enumerate(rules)
            ],
            "score": {k: _round(st.get(f"score_{k}")) for k in ("min", "median", "max")},
        }
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


# ------------------------------------------------------------------------------------- many strategies
@dataclass
class StrategyOutcome:
    """One strategy's run over a set of dates: what the executions table and the metadata show."""

    strategy_id: str
    status: str  # SUCCESS | FAILED | TIMEOUT
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_ms: float
    evaluation: Evaluation | None = None
    error_type: str | None = None
    error_message: str | None = None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_strategies(
    definitions: Sequence[StrategyDefinition],
    frame: pl.DataFrame,
    dates: Sequence[dt.date],
    options: RunOptions = RunOptions(),
    *,
    timeout_seconds: float | None = None,
    evaluate: Callable[..., Evaluation] = evaluate_strategy,
) -> list[StrategyOutcome]:
    """Run each strategy in turn, isolating failures; with `timeout_seconds`, stop one that runs too long.

    Strategies run one after another (the source's parallel_strategies=false): each is already
    parallel inside polars, and sequential runs give honest per-strategy timings.

    With `timeout_seconds` (the runner passes timeout_minutes), each strategy is evaluated in a worker
    process (`isolation.map_with_deadline`) that is stopped when its time is up: the strategy is
    recorded as TIMEOUT and the next one starts. The limit is per strategy, so one hung strategy
    costs the run at most `timeout_seconds` and never the strategies after it. Without it,
    evaluation is inline (notebooks, unit tests).
    `evaluate` is `evaluate_strategy` unless a caller substitutes one (it must be a module-level
    function when a timeout is given: the worker receives it by reference).
    """
    if timeout_seconds is None:
        results = (_inline(evaluate, definition, frame, dates, options) for definition in definitions)
    else:
        # One worker process evaluates the strategies in turn (the frame is sent to it once); a strategy
        # past its time kills that worker and the next strategy gets a fresh one.
        shared = (evaluate, frame, dates, options)
        results = isolation.map_with_deadline(_evaluate_one, definitions, shared, timeout_seconds)
    outcomes: list[StrategyOutcome] = []
    started_at, tick = _utcnow(), time.perf_counter()
    for definition, result in zip(definitions, results, strict=True):
        outcomes.append(_outcome(definition.strategy_id, result, started_at, (time.perf_counter() - tick) * 1000))
        started_at, tick = _utcnow(), time.perf_counter()
    return outcomes


def _inline(evaluate: Callable[..., Evaluation], definition, frame, dates, options) -> isolation.Outcome:
    try:
        return isolation.Finished(evaluate(definition, frame, dates, options))
    except Exception as exc:  # isolation: one broken strategy never stops the others
        return isolation.Raised(type(exc).__name__, f"{type(exc).__name__}: {exc}"[:4000])


def _evaluate_one(definition: StrategyDefinition, evaluate: Callable[..., Evaluation], frame, dates, options):
    """What the worker process runs for each strategy."""
    return evaluate(definition, frame, dates, options)


def _outcome(
    strategy_id: str, result: isolation.Outcome, started_at: dt.datetime, duration_ms: float
) -> StrategyOutcome:
    finished_at = _utcnow()
    if isinstance(result, isolation.Finished):
        return StrategyOutcome(strategy_id, "SUCCESS", started_at, finished_at, duration_ms, result.value)
    if isinstance(result, isolation.TimedOut):
        message = f"stopped after {result.seconds:g} s: the strategy exceeded timeout_minutes ({result.seconds / 60:g})"
        return StrategyOutcome(
            strategy_id, "TIMEOUT", started_at, finished_at, duration_ms, error_type="Timeout", error_message=message
        )
    if isinstance(result, isolation.Crashed):
        message = f"the worker process evaluating the strategy exited with code {result.exitcode} without a result"
        return StrategyOutcome(
            strategy_id,
            "FAILED",
            started_at,
            finished_at,
            duration_ms,
            error_type="WorkerCrashed",
            error_message=message,
        )
    return StrategyOutcome(
        strategy_id,
        "FAILED",
        started_at,
        finished_at,
        duration_ms,
        error_type=result.error_type,
        error_message=result.message,
    )
