"""Strategy definitions as data: the YAML schema, its validation and canonical form.

A strategy is declared, not coded. Its file says which stocks it looks at (universe), how each stock
is scored from factor values (rules), and how a score becomes BUY/SELL/HOLD with a confidence. The
engine (`engine.py`) turns a validated `StrategyDefinition` into polars expressions; nothing here
touches data, Dagster or the warehouse, so a definition can be validated anywhere (CI, a notebook,
the `strategies` asset before anything is stored).

Schema (every field is checked; unknown fields are rejected so a typo never silently does nothing)::

    strategy_id: STG_MOMENTUM_001        # ^[A-Z][A-Z0-9_]{2,31}$ (also the prefix of signal ids)
    name: Momentum 20/60
    description: free text               # optional
    status: ACTIVE                       # ACTIVE | INACTIVE
    version: 1                           # integer >= 1; bump it whenever the rules change
    horizon_days: 20                     # trading days a signal is judged over (hit rate)
    universe:                            # optional; these are the defaults (JOB-M11-001)
      market_type: ALL                   # ALL | TWSE | TPEx
      min_volume_lots: 500               # day volume in lots of 1,000 shares
      exclude_etf: true
      exclude_suspended: true
      exclude_limit_up: false            # tradability: closed at limit-up that day
      exclude_limit_down: false          #   closed at limit-down
      exclude_disposition: false         #   under disposition (處置股)
      exclude_full_cash_delivery: false  #   full-cash delivery (全額交割)
    rules:                               # at least one; each is a condition OR a scored term
      - {factor: close, op: ">", other: sma_60, weight: 1}      # condition: factor vs factor (x scale)
      - {factor: rsi_14, op: between, value: [40, 80], weight: 1}  # condition: factor vs constant(s)
      - {factor: ret_20, transform: rank, weight: 2}            # scored: cross-sectional percentile
      - {factor: pe, transform: zscore, direction: lower, weight: 1}
      - {factor: kd_k, transform: raw, bounds: [20, 80], weight: 1}
      - {factor: kd_k, op: cross_above, other: kd_d, weight: 1}   # crossed since the previous trading day
    exit:                                # optional: the exit / opposite setup, conditions only (no weight);
      - {factor: close, op: "<", other: bb_lower}   # SELL when ALL of them hold on the day
      - {factor: ret_1, op: "<", value: 0}
    signal:
      buy_above: 0.7                     # score >= buy_above -> BUY   (omit: never BUY)
      sell_below: 0.3                    # score <= sell_below -> SELL (omit: only `exit` SELLs)
      confidence_range: [0.5, 1.0]       # confidence at the threshold .. at the extreme score
      min_coverage: 0.5                  # share of rule weight that must have data, else no signal
    backtest:                            # optional: how the evaluation backtest trades the signals
      max_positions: 10                  #   (these are the defaults; see qrl_platform/evaluation/rules.py)
      capital_twd: 10000000
      hold_days: 20                      #   default: horizon_days
      broker_discount: 1.0               #   multiplies the 0.1425 % commission
      odd_lots: false
      buy_full_cash_delivery: false

Scoring: every rule yields a value in [0, 1] per stock and day — a condition 1 or 0; `rank` the
percentile (average rank − 1)/(n − 1) among the day's universe; `zscore` the z-score (population
std) clipped to ±3 and mapped to (z + 3)/6; `raw` the value clipped to `bounds` and scaled to [0, 1];
`direction: lower` uses 1 − value. `cross_above` is 1 when the factor was at or below the other side
on the previous trading day and is above it today (`cross_below` mirrors it), so it also needs the
previous day's values. Missing inputs make a rule unavailable (not 0), and the score is
the weight-averaged value of the available rules.

Signals: SELL when every `exit` condition holds (a condition whose inputs are missing does not hold)
or the score is at or below `sell_below`; otherwise BUY when the score is at or above `buy_above`;
otherwise HOLD, which means "no setup". An exit therefore vetoes a BUY on the same day. Use
`sell_below` only where a low score *is* the opposite setup (momentum's losers); where a low score
merely means "the setup is absent", declare the exit instead, so SELL says "get out" and not
"nothing here". A signal needs a score (min_coverage) whichever way it was decided. Validation errors name the strategy and the field:
``STG_VALUE_001: rules[2].factor 'pe_ratio' is not a known factor (did you mean 'pe'?)``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qrl_platform.evaluation.rules import BacktestRule, parse_backtest_rule

STATUSES = ("ACTIVE", "INACTIVE")
MARKET_TYPES = ("ALL", "TWSE", "TPEx")
# cross_above / cross_below compare today with the previous trading day: `factor` crossed `other` (or
# `value`) from at-or-below to above (from at-or-above to below).
CROSS_OPS = ("cross_above", "cross_below")
CONDITION_OPS = (">", ">=", "<", "<=", "between", *CROSS_OPS)
TRANSFORMS = ("rank", "zscore", "raw")
DIRECTIONS = ("higher", "lower")
# Raw fields from daily_quotes that rules may use next to the indicator factors.
DERIVED_FIELDS = ("close", "volume_lots")
STRATEGY_ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{2,31}$")
MAX_HORIZON_DAYS = 250


def registry_factor_ids() -> frozenset[str]:
    """Factor ids of the technical/fundamental/chip registry — the one list (imported lazily: it lives with the indicators)."""
    from qrl_platform.factors import registry

    return frozenset(registry.factor_ids())


def known_fields(factor_ids: Iterable[str] | None = None) -> frozenset[str]:
    """Everything a rule may reference: the registry's factors plus the derived quote fields."""
    if factor_ids is None:
        factor_ids = registry_factor_ids()
    return frozenset(factor_ids) | frozenset(DERIVED_FIELDS)


class InvalidStrategy(ValueError):
    """A strategy definition that cannot run; the message names the strategy (and file) and each bad field."""

    def __init__(self, strategy: str, errors: list[str], source: str | None = None):
        self.strategy = strategy
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{strategy}: {error}" for error in errors))

    @classmethod
    def combine(cls, problems: list[InvalidStrategy]) -> InvalidStrategy:
        """Several files' errors as one exception (the message lists them all)."""
        combined = cls(problems[0].strategy, problems[0].errors, problems[0].source)
        combined.args = ("\n".join(str(problem) for problem in problems),)
        combined.problems = problems
        return combined


@dataclass(frozen=True)
class Universe:
    market_type: str = "ALL"
    min_volume_lots: float = 500.0
    exclude_etf: bool = True
    exclude_suspended: bool = True
    # Tradability exclusions (the `tradability` asset), off by default: the stats already count a BUY at
    # limit-up / SELL at limit-down as unfilled, and a disposition or full-cash-delivery stock can still
    # be traded (by call auction, paid in advance) — leaving them out is the strategy's choice.
    exclude_limit_up: bool = False
    exclude_limit_down: bool = False
    exclude_disposition: bool = False
    exclude_full_cash_delivery: bool = False


@dataclass(frozen=True)
class Condition:
    """`factor op value`, `factor between [lo, hi]` or `factor op other × scale`; worth 1 when true."""

    factor: str
    op: str
    weight: float
    value: float | tuple[float, float] | None = None
    other: str | None = None
    scale: float = 1.0

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.factor, self.other) if self.other else (self.factor,)

    @property
    def previous_day_fields(self) -> tuple[str, ...]:
        """Fields whose previous-trading-day value the rule also reads (the cross operators)."""
        return self.fields if self.op in CROSS_OPS else ()

    def describe(self) -> str:
        if self.op == "between":
            lo, hi = self.value  # type: ignore[misc]
            return f"{self.factor} between [{lo:g}, {hi:g}]"
        rhs = f"{self.other}" if self.other else f"{self.value:g}"
        if self.other and self.scale != 1.0:
            rhs = f"{self.scale:g}*{self.other}"
        return f"{self.factor} {self.op} {rhs}"


@dataclass(frozen=True)
class ScoredTerm:
    """A factor mapped to [0, 1] across the day's universe (rank, zscore) or by fixed bounds (raw)."""

    factor: str
    transform: str
    weight: float
    direction: str = "higher"
    bounds: tuple[float, float] | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.factor,)

    @property
    def previous_day_fields(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        suffix = f" {self.bounds[0]:g}..{self.bounds[1]:g}" if self.bounds else ""
        return f"{self.transform}({self.factor}{suffix}){' lower' if self.direction == 'lower' else ''}"


Rule = Condition | ScoredTerm


@dataclass(frozen=True)
class SignalMapping:
    buy_above: float | None = None
    sell_below: float | None = None
    confidence_range: tuple[float, float] = (0.5, 1.0)
    min_coverage: float = 0.5


@dataclass(frozen=True)
class StrategyDefinition:
    strategy_id: str
    name: str
    status: str
    version: int
    horizon_days: int
    rules: tuple[Rule, ...]
    signal: SignalMapping
    universe: Universe = field(default_factory=Universe)
    description: str = ""
    exit: tuple[Condition, ...] = ()  # SELL when all hold (weight unused, stored as 1)
    backtest: BacktestRule = field(default_factory=BacktestRule)  # how the evaluation backtest trades it
    source: str = field(default="", compare=False)  # the file it came from, for error messages

    @property
    def is_active(self) -> bool:
        return self.status == "ACTIVE"

    def fields(self) -> list[str]:
        """Factor/derived fields the rules read, in rule order without duplicates."""
        seen: dict[str, None] = {}
        for rule in (*self.rules, *self.exit):
            for name in rule.fields:
                seen.setdefault(name, None)
        return list(seen)

    def previous_day_fields(self) -> list[str]:
        """Fields whose previous-trading-day values the rules read (cross operators), without duplicates."""
        return list(dict.fromkeys(name for rule in (*self.rules, *self.exit) for name in rule.previous_day_fields))

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (stored in `strategies.definition`; `parse_definition` reads it back)."""
        rules = [_rule_dict(rule) for rule in self.rules]
        signal = {k: v for k, v in asdict(self.signal).items() if v is not None}
        signal["confidence_range"] = list(self.signal.confidence_range)
        out = {
            "strategy_id": self.strategy_id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "version": self.version,
            "horizon_days": self.horizon_days,
            "universe": _universe_dict(self.universe),
            "rules": rules,
            "signal": signal,
        }
        if self.exit:  # absent when empty, so definitions stored before `exit` existed keep their content
            out["exit"] = [{k: v for k, v in _rule_dict(c).items() if k != "weight"} for c in self.exit]
        if self.backtest != BacktestRule():  # absent when default, so stored content keys stay unchanged
            default = BacktestRule().to_dict()
            out["backtest"] = {k: v for k, v in self.backtest.to_dict().items() if v != default[k]}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    def content_key(self) -> str:
        """The definition without its status: what must not change without a version bump."""
        content = self.to_dict()
        content.pop("status")
        return json.dumps(content, sort_keys=True, ensure_ascii=False)


def _universe_dict(universe: Universe) -> dict[str, Any]:
    # Tradability exclusions appear only when on, so definitions stored before they existed keep their
    # content (no version bump needed for an unchanged strategy).
    return {k: v for k, v in asdict(universe).items() if k not in TRADABILITY_EXCLUSIONS or v}


def _rule_dict(rule: Rule) -> dict[str, Any]:
    raw = {k: v for k, v in asdict(rule).items() if v is not None}
    if isinstance(rule, Condition) and rule.scale == 1.0:
        raw.pop("scale")
    for key in ("value", "bounds"):
        if isinstance(raw.get(key), tuple):
            raw[key] = list(raw[key])
    return raw


# ------------------------------------------------------------------------------------------ parsing
_TOP_FIELDS = {
    "strategy_id",
    "name",
    "description",
    "status",
    "version",
    "horizon_days",
    "universe",
    "rules",
    "exit",
    "signal",
    "backtest",
}
# Universe flag -> the `tradability` column it excludes on.
TRADABILITY_EXCLUSIONS = {
    "exclude_limit_up": "at_limit_up",
    "exclude_limit_down": "at_limit_down",
    "exclude_disposition": "is_disposition",
    "exclude_full_cash_delivery": "is_full_cash_delivery",
}
_UNIVERSE_FIELDS = {"market_type", "min_volume_lots", "exclude_etf", "exclude_suspended", *TRADABILITY_EXCLUSIONS}
_CONDITION_FIELDS = {"factor", "op", "value", "other", "scale", "weight"}
_SCORED_FIELDS = {"factor", "transform", "direction", "bounds", "weight"}
_SIGNAL_FIELDS = {"buy_above", "sell_below", "confidence_range", "min_coverage"}


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path} {message}" if path else message)

    def unknown_fields(self, path: str, raw: Mapping, allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                hint = _did_you_mean(str(key), allowed)
                self.add(f"{path}{'.' if path else ''}{key}", f"is not a known field{hint}")


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    candidates = sorted(candidates)
    # A known id that is a whole leading part of the name ('pe' in 'pe_ratio') beats string similarity.
    prefixed = [c for c in candidates if name.startswith(c + "_")]
    close = [max(prefixed, key=len)] if prefixed else difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(raw: Mapping, key: str, path: str, errors: _Errors, *, default: float | None = None) -> float | None:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if not _is_number(value):
        errors.add(f"{path}.{key}", f"must be a finite number, got {value!r}")
        return default
    return float(value)


def _pair(value: Any, path: str, errors: _Errors) -> tuple[float, float] | None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)):
        errors.add(path, f"must be a list of two numbers [low, high], got {value!r}")
        return None
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        errors.add(path, f"low {lo:g} is above high {hi:g}")
        return None
    return lo, hi


def parse_definition(
    raw: Any, *, factor_ids: Iterable[str] | None = None, source: str | None = None
) -> StrategyDefinition:
    """Validate a definition (a mapping from YAML or from the stored JSON) and return it.

    Collects every problem before raising, so one edit round fixes a whole file. `factor_ids`
    defaults to the indicator registry; `source` (a file name) prefixes the messages.
    """
    if not isinstance(raw, Mapping):
        raise InvalidStrategy(
            "<unknown>", [f"a strategy definition must be a mapping, got {type(raw).__name__}"], source
        )
    strategy_id = raw.get("strategy_id")
    label = strategy_id if isinstance(strategy_id, str) and strategy_id else "<missing strategy_id>"
    errors = _Errors()
    errors.unknown_fields("", raw, _TOP_FIELDS)
    fields = known_fields(factor_ids)

    if not isinstance(strategy_id, str) or not STRATEGY_ID_PATTERN.match(strategy_id):
        errors.add(
            "strategy_id", f"must match {STRATEGY_ID_PATTERN.pattern} (e.g. STG_MOMENTUM_001), got {strategy_id!r}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.add("name", "is required (a non-empty string)")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        errors.add("description", "must be a string")
        description = ""
    status = raw.get("status")
    if status not in STATUSES:
        errors.add("status", f"must be one of {'/'.join(STATUSES)}, got {status!r}")
    version = raw.get("version")
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        errors.add("version", f"must be an integer >= 1, got {version!r}")
    horizon = raw.get("horizon_days")
    if not (isinstance(horizon, int) and not isinstance(horizon, bool) and 1 <= horizon <= MAX_HORIZON_DAYS):
        errors.add(
            "horizon_days", f"must be an integer between 1 and {MAX_HORIZON_DAYS} (trading days), got {horizon!r}"
        )

    universe = _parse_universe(raw.get("universe"), errors)
    rules = _parse_rules(raw.get("rules"), fields, errors)
    exit_conditions = _parse_exit(raw.get("exit"), fields, errors)
    signal = _parse_signal(raw.get("signal"), errors, has_exit=bool(exit_conditions))
    backtest, backtest_errors = parse_backtest_rule(raw.get("backtest"))
    for path, message in backtest_errors:
        errors.add(path, message)

    if errors.items:
        raise InvalidStrategy(label, errors.items, source)
    return StrategyDefinition(
        strategy_id=strategy_id,
        name=name.strip(),
        description=description.strip(),
        status=status,
        version=version,
        horizon_days=horizon,
        universe=universe,
        rules=tuple(rules),
        exit=tuple(exit_conditions),
        signal=signal,
        backtest=backtest,
        source=source or "",
    )


def _parse_universe(raw: Any, errors: _Errors) -> Universe:
    if raw is None:
        return Universe()
    if not isinstance(raw, Mapping):
        errors.add("universe", f"must be a mapping, got {raw!r}")
        return Universe()
    errors.unknown_fields("universe", raw, _UNIVERSE_FIELDS)
    default = Universe()
    market_type = raw.get("market_type", default.market_type)
    if market_type not in MARKET_TYPES:
        errors.add("universe.market_type", f"must be one of {'/'.join(MARKET_TYPES)}, got {market_type!r}")
        market_type = default.market_type
    min_volume = _number(raw, "min_volume_lots", "universe", errors, default=default.min_volume_lots)
    if min_volume is not None and min_volume < 0:
        errors.add("universe.min_volume_lots", f"must be >= 0, got {min_volume:g}")
    flags = {}
    for key in ("exclude_etf", "exclude_suspended", *TRADABILITY_EXCLUSIONS):
        value = raw.get(key, getattr(default, key))
        if not isinstance(value, bool):
            errors.add(f"universe.{key}", f"must be true or false, got {value!r}")
            value = getattr(default, key)
        flags[key] = value
    return Universe(market_type=market_type, min_volume_lots=min_volume or 0.0, **flags)


def _parse_rules(raw: Any, fields: frozenset[str], errors: _Errors) -> list[Rule]:
    if not isinstance(raw, list) or not raw:
        errors.add("rules", "must be a non-empty list of conditions and/or scored terms")
        return []
    rules: list[Rule] = []
    for index, item in enumerate(raw):
        path = f"rules[{index}]"
        if not isinstance(item, Mapping):
            errors.add(path, f"must be a mapping, got {item!r}")
            continue
        has_op, has_transform = "op" in item, "transform" in item
        if has_op == has_transform:
            errors.add(path, "needs exactly one of 'op' (a condition) or 'transform' (a scored term)")
            continue
        factor = item.get("factor")
        if not isinstance(factor, str) or not factor:
            errors.add(f"{path}.factor", "is required")
        elif factor not in fields:
            errors.add(f"{path}.factor", f"{factor!r} is not a known factor{_did_you_mean(factor, fields)}")
        weight = item.get("weight")
        if not _is_number(weight):
            errors.add(f"{path}.weight", f"is required (a finite number >= 0), got {weight!r}")
            weight = 0.0
        elif weight < 0:
            errors.add(
                f"{path}.weight",
                f"{weight:g} is negative; weights add up to a score in [0, 1] — express 'lower is better' "
                "with direction: lower or the opposite operator",
            )
        rule = (_parse_condition if has_op else _parse_scored)(item, path, float(weight), fields, errors)
        if rule is not None:
            rules.append(rule)
    if rules and len(rules) == len(raw) and sum(rule.weight for rule in rules) <= 0:
        errors.add("rules", "weights sum to 0: at least one rule needs a positive weight, or the score is undefined")
    return rules


def _parse_exit(raw: Any, fields: frozenset[str], errors: _Errors) -> list[Condition]:
    """The exit conditions: a list of conditions (factor/op/value or other/scale), all of which must hold."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        errors.add("exit", "must be a non-empty list of conditions (omit it for no exit rule)")
        return []
    conditions: list[Condition] = []
    for index, item in enumerate(raw):
        path = f"exit[{index}]"
        if not isinstance(item, Mapping):
            errors.add(path, f"must be a mapping, got {item!r}")
            continue
        if "op" not in item:
            hint = " (scored terms belong in rules)" if "transform" in item else ""
            errors.add(f"{path}.op", f"is required: an exit is a condition{hint}")
            continue
        factor = item.get("factor")
        if not isinstance(factor, str) or not factor:
            errors.add(f"{path}.factor", "is required")
        elif factor not in fields:
            errors.add(f"{path}.factor", f"{factor!r} is not a known factor{_did_you_mean(factor, fields)}")
        condition = _parse_condition(item, path, 1.0, fields, errors, allowed=_CONDITION_FIELDS - {"weight"})
        if condition is not None:
            conditions.append(condition)
    return conditions


def _parse_condition(
    item: Mapping,
    path: str,
    weight: float,
    fields: frozenset[str],
    errors: _Errors,
    *,
    allowed: set[str] = _CONDITION_FIELDS,
) -> Condition | None:
    errors.unknown_fields(path, item, allowed)
    op = item.get("op")
    if op not in CONDITION_OPS:
        hint = " ('==' is not offered: factor values are floats)" if op in ("=", "==") else ""
        errors.add(f"{path}.op", f"{op!r} is not a supported operator; use one of {', '.join(CONDITION_OPS)}{hint}")
        return None
    has_value, other = "value" in item, item.get("other")
    if has_value == (other is not None):
        errors.add(path, "a condition compares with exactly one of 'value' (a constant) or 'other' (a factor)")
        return None
    if other is not None:
        if op == "between":
            errors.add(f"{path}.other", "cannot be used with 'between' (give value: [low, high])")
            return None
        if not isinstance(other, str) or other not in fields:
            errors.add(f"{path}.other", f"{other!r} is not a known factor{_did_you_mean(str(other), fields)}")
            return None
        scale = _number(item, "scale", path, errors, default=1.0)
        if scale is not None and scale <= 0:
            errors.add(f"{path}.scale", f"must be > 0, got {scale:g}")
        return Condition(factor=item.get("factor"), op=op, weight=weight, other=other, scale=scale or 1.0)
    if "scale" in item:
        errors.add(f"{path}.scale", "only applies when comparing with 'other'")
    value = item["value"]
    if op == "between":
        pair = _pair(value, f"{path}.value", errors)
        return Condition(factor=item.get("factor"), op=op, weight=weight, value=pair) if pair else None
    if not _is_number(value):
        errors.add(f"{path}.value", f"must be a finite number for '{op}', got {value!r}")
        return None
    return Condition(factor=item.get("factor"), op=op, weight=weight, value=float(value))


def _parse_scored(
    item: Mapping, path: str, weight: float, fields: frozenset[str], errors: _Errors
) -> ScoredTerm | None:
    errors.unknown_fields(path, item, _SCORED_FIELDS)
    transform = item.get("transform")
    if transform not in TRANSFORMS:
        errors.add(
            f"{path}.transform", f"{transform!r} is not a supported transform; use one of {', '.join(TRANSFORMS)}"
        )
        return None
    direction = item.get("direction", "higher")
    if direction not in DIRECTIONS:
        errors.add(f"{path}.direction", f"must be 'higher' or 'lower', got {direction!r}")
        return None
    bounds = None
    if transform == "raw":
        if "bounds" not in item:
            errors.add(f"{path}.bounds", "is required for transform 'raw' ([low, high] mapped to [0, 1])")
            return None
        bounds = _pair(item["bounds"], f"{path}.bounds", errors)
        if bounds and bounds[0] == bounds[1]:
            errors.add(f"{path}.bounds", f"low and high are both {bounds[0]:g}; the range must not be empty")
            return None
        if bounds is None:
            return None
    elif "bounds" in item:
        errors.add(f"{path}.bounds", f"only applies to transform 'raw', not {transform!r}")
    return ScoredTerm(factor=item.get("factor"), transform=transform, weight=weight, direction=direction, bounds=bounds)


def _parse_signal(raw: Any, errors: _Errors, *, has_exit: bool = False) -> SignalMapping:
    if not isinstance(raw, Mapping):
        errors.add("signal", "is required: a mapping with buy_above and/or sell_below")
        return SignalMapping()
    errors.unknown_fields("signal", raw, _SIGNAL_FIELDS)
    buy = _number(raw, "buy_above", "signal", errors)
    sell = _number(raw, "sell_below", "signal", errors)
    if buy is None and sell is None and not has_exit:
        errors.add("signal", "needs buy_above and/or sell_below, or an exit (otherwise every stock is HOLD)")
    if buy is not None and not 0 < buy <= 1:
        errors.add("signal.buy_above", f"must be in (0, 1] (scores are in [0, 1]), got {buy:g}")
    if sell is not None and not 0 <= sell < 1:
        errors.add("signal.sell_below", f"must be in [0, 1) (scores are in [0, 1]), got {sell:g}")
    if buy is not None and sell is not None and sell >= buy:
        errors.add("signal", f"sell_below ({sell:g}) must be below buy_above ({buy:g})")
    confidence = SignalMapping().confidence_range
    if "confidence_range" in raw:
        pair = _pair(raw["confidence_range"], "signal.confidence_range", errors)
        if pair is not None:
            if pair[0] < 0 or pair[1] > 1:
                errors.add("signal.confidence_range", f"must lie within [0, 1], got [{pair[0]:g}, {pair[1]:g}]")
            else:
                confidence = pair
    coverage = _number(raw, "min_coverage", "signal", errors, default=SignalMapping().min_coverage)
    if coverage is not None and not 0 < coverage <= 1:
        errors.add("signal.min_coverage", f"must be in (0, 1], got {coverage:g}")
    return SignalMapping(buy_above=buy, sell_below=sell, confidence_range=confidence, min_coverage=coverage or 0.5)


# ------------------------------------------------------------------------------------------ files
BUILTIN_DIR = Path(__file__).with_name("builtin")


def load_definition_file(path: Path, *, factor_ids: Iterable[str] | None = None) -> StrategyDefinition:
    """One YAML file -> one validated definition; errors name the file, the strategy and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidStrategy("<unparsed>", [f"is not valid YAML: {exc}"], source=path.name) from exc
    return parse_definition(raw, factor_ids=factor_ids, source=path.name)


def load_definitions(
    directory: Path = BUILTIN_DIR, *, factor_ids: Iterable[str] | None = None
) -> list[StrategyDefinition]:
    """Every `*.yaml` in `directory`, validated; all files' errors are reported together."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no strategy definitions (*.yaml) in {directory}")
    definitions: list[StrategyDefinition] = []
    problems: list[InvalidStrategy] = []
    owners: dict[str, str] = {}
    for path in files:
        try:
            definition = load_definition_file(path, factor_ids=factor_ids)
        except InvalidStrategy as exc:
            problems.append(exc)
            continue
        if definition.strategy_id in owners:
            problems.append(
                InvalidStrategy(
                    definition.strategy_id,
                    [f"strategy_id is also declared in {owners[definition.strategy_id]}"],
                    path.name,
                )
            )
            continue
        owners[definition.strategy_id] = path.name
        definitions.append(definition)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InvalidStrategy.combine(problems)
    return definitions
