"""The live market source: TWSE + TPEx daily tables, TDCC shareholding, MOPS revenue and financials.

For each table: ask TWSE first. TWSE's "no data" answer means the market was closed that day (typhoon
closures the calendar missed), and TPEx is not asked — unless it cannot be a closure yet: a
future date, today before the closing data are out, or a table published later than the quotes TWSE
already has (those raise `NotPublishedYet`, a `BadMarketData`, so nothing is stored and a retry works). Otherwise ask TPEx, combine and
`conform()`. Every payload is parsed and checked (TWSE's rows by `conform()` on their own, TPEx's as part
of the whole day) before it is cached or returned, so a bad answer raises `BadMarketData` and neither a
partial frame nor a cache entry comes out of it.

MOPS (monthly revenue, quarterly financials; see mops.py) is asked only once the period's statutory
deadline has passed (revenue: the 10th of the next month; Q1 May 15, Q2 Aug 14, Q3 Nov 14, Q4 Mar 31;
`timetable.is_due`): before it the report is still filling up, and a partial month stored under its
key would never be replaced. Every row's `published_on` is that deadline (the statutory rule): MOPS's
pages do not say when each company filed, and t21sc03's 出表日期 is only the day the page was printed.
The same value whenever the period is fetched, so re-runs and backfills agree; on the deadline day
itself a live run has not fetched the period yet, while a later backfill of that day would see it.
A period MOPS answers 查無資料 for, or whose deadline has not passed, raises `NotPublishedYet` (retry
later, nothing stored).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.calendar import CLOSING_DATA_OUT, closing_data_out, taipei_now, taipei_today
from qrl_platform.market import schema, timetable
from qrl_platform.market.live import corporate_actions as actions
from qrl_platform.market.live import mops, tdcc, tpex, twse
from qrl_platform.market.live.http import JsonResponse, PoliteClient
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import BadMarketData
from qrl_platform.market.sources import DAILY_TABLES, EVENT_TABLES, PERIODIC_TABLES, DayResult
from qrl_platform.settings import MarketSourceSettings


def _may_still_publish(date: dt.date) -> bool:
    now = taipei_now()
    return date > now.date() or (date == now.date() and not closing_data_out(now))


class LiveMarketSource:
    name = "live"
    # TWSE/TPEx daily tables and corporate actions, TDCC shareholding, MOPS revenue and financials.
    provides = frozenset((*DAILY_TABLES, *PERIODIC_TABLES, *EVENT_TABLES))

    def __init__(self, settings: MarketSourceSettings, cache_root: str, min_interval: float | None = None):
        """`cache_root`: where answers are kept, `Settings.raw_cache_root` in production (a path or an
        fsspec URL: with an `s3://` home every pod shares the cache). `min_interval` overrides the
        settings' politeness interval (tests, benchmarks)."""
        self.settings = settings
        self.http = PoliteClient(
            cache_root,
            min_interval=settings.http_min_interval_seconds if min_interval is None else min_interval,
            backoff=settings.http_backoff_seconds,
        )

    def close(self) -> None:
        self.http.close()

    def fetch_day(self, table: str, date: dt.date) -> DayResult:
        if table not in DAILY_TABLES:
            raise ValueError(f"live source: unknown daily table {table!r} (expected one of {DAILY_TABLES})")
        details: dict = {"source": self.name, "endpoints": [], "requests": 0, "cache_hits": 0, "rows_per_market": {}}
        listed, listed_answer = self._fetch(self.settings.twse_base_url, twse, table, date, details)
        if listed.no_data:
            label = twse.ENDPOINTS[table].label
            if _may_still_publish(date):
                raise NotPublishedYet(
                    f"{label} {date}: no data yet ({listed.reason}); TWSE publishes the day's closing data by about "
                    f"{CLOSING_DATA_OUT:%H:%M} Taipei time — try again then"
                )
            if table != "daily_quotes" and self.has_data(date):
                # Not cached: not a closed day, only a table that comes out later (margin in the evening).
                raise NotPublishedYet(
                    f"{label} {date}: no data yet ({listed.reason}) although TWSE has quotes for the day; "
                    f"the table is published later — try again"
                )
            self.http.keep(listed_answer, no_data=True)
            reason = f"TWSE has no data for {date}: {listed.reason}"
            return DayResult(table, date, schema.empty(table), closed=True, reason=reason, details=details)
        # The table's checks (negative prices, duplicate rows, high < low) run on TWSE's rows alone before
        # its answer is cached: a parsed answer that fails them must not stick in the cache.
        schema.conform(table, listed.frame, context=f"{twse.ENDPOINTS[table].label} {date}")
        self.http.keep(listed_answer)  # valid on its own: never ask TWSE for it again, whatever TPEx says
        otc, otc_answer = self._fetch(self.settings.tpex_base_url, tpex, table, date, details)
        if otc.no_data:
            # Same calendar for both markets: empty TPEx on a TWSE trading day is "not yet", never "closed".
            raise NotPublishedYet(
                f"{tpex.ENDPOINTS[table].label} {date}: no rows ({otc.reason}) although TWSE has data for the day; "
                f"try again later"
            )
        details["rows_per_market"] = {"TWSE": listed.frame.height, "TPEx": otc.frame.height}
        frame = schema.conform(table, pl.concat([listed.frame, otc.frame], how="vertical"), context=f"{date}")
        self.http.keep(otc_answer)  # only once the whole day conforms (e.g. no stock listed on both markets)
        return DayResult(table, date, frame, details=details)

    def shareholding_distribution(self, week: dt.date) -> pl.DataFrame:
        """TDCC's distribution for the week of Friday `week` — only while it is TDCC's latest (see tdcc.py)."""
        if week.weekday() != 4:
            raise BadMarketData(f"shareholding_distribution: week {week} is not a Friday (TDCC data date)")
        answer = self._tdcc_answer(week)
        try:
            distribution = tdcc.parse(answer.payload, week)
        except BadMarketData:
            if not answer.from_cache:
                raise
            self.http.forget(answer)  # a cached answer the parser now rejects: ask once more
            answer = self._tdcc_answer(week)
            distribution = tdcc.parse(answer.payload, week)
        self.http.keep(answer, verified=True)  # parsed, and its data date is this week's
        return distribution

    def _tdcc_answer(self, week: dt.date) -> JsonResponse:
        endpoint = tdcc.ENDPOINT
        return self.http.get_json(
            self.settings.tdcc_base_url,
            endpoint.path,
            dict(endpoint.params),
            date=week,
            label=endpoint.label,
            decode=tdcc.decode,
            kind="CSV",
        )

    # ------------------------------------------------------------------------------- corporate actions
    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Events with an ex-date (resumption date) in start..end from the six exchange lists (see
        live/corporate_actions.py). Asked only once the timetable says `end`'s list is out; an answer is
        cached only after it parsed and only for ranges that lie wholly in the past."""
        if start > end:
            raise BadMarketData(f"corporate_actions: start {start} is after end {end}")
        self._when_due("corporate_actions", end, f"corporate_actions {start}..{end}")
        events, pending = self._action_list(
            self.settings.twse_base_url, actions.TWT49U, actions.parse_twt49u, actions.twse_query, start, end
        )
        for item in pending:
            answer = self.http.get_json(
                self.settings.twse_base_url, actions.TWT49U_DETAIL.path,
                actions.detail_query(item.stock_id, item.ex_date), date=item.ex_date,
                label=actions.TWT49U_DETAIL.label, variant=item.stock_id,
            )  # fmt: skip
            events.append(actions.parse_twt49u_detail(answer.payload, item))
            self._keep_if_settled(answer, item.ex_date)
        for endpoint, parse in actions.TWSE_BASIS_CHANGES:
            events += self._action_list(self.settings.twse_base_url, endpoint, parse, actions.twse_query, start, end)
        for endpoint, parse in actions.TPEX_LISTS:
            events += self._action_list(self.settings.tpex_base_url, endpoint, parse, actions.tpex_query, start, end)
        frame = pl.DataFrame(events, schema=schema.CORPORATE_ACTIONS) if events else schema.empty("corporate_actions")
        return schema.conform("corporate_actions", frame, context=f"{start}..{end}").sort("ex_date", "stock_id", "kind")

    def _action_list(self, base_url: str, endpoint, parse, query, start: dt.date, end: dt.date):
        answer = self.http.get_json(
            base_url, endpoint.path, query(start, end), date=end, label=endpoint.label, variant=f"from-{start}"
        )
        try:
            parsed = parse(answer.payload, start, end)
        except BadMarketData:
            if not answer.from_cache:
                raise
            self.http.forget(answer)  # a cached answer the parser now rejects: ask once more
            answer = self.http.get_json(
                base_url, endpoint.path, query(start, end), date=end, label=endpoint.label, variant=f"from-{start}"
            )
            parsed = parse(answer.payload, start, end)
        self._keep_if_settled(answer, end)
        return parsed

    def _keep_if_settled(self, answer: JsonResponse, end: dt.date) -> None:
        # A list for a range reaching today may still grow (an event published later in the day).
        if end < taipei_today():
            self.http.keep(answer, verified=True)

    # ------------------------------------------------------------------------------------------- MOPS
    def monthly_revenue(self, month: dt.date) -> pl.DataFrame:
        """Every TWSE- and TPEx-listed company's revenue for `month` (thousand TWD), from t21sc03."""
        if month.day != 1:
            raise BadMarketData(f"monthly_revenue: {month} is not the first day of a month (the partition key)")
        deadline = mops.revenue_deadline(month)
        self._when_due("monthly_revenue", month, f"{mops.REVENUE.label} {month:%Y-%m}")
        records = []
        for market in mops.MARKETS:
            rows = self._mops_answer(
                mops.revenue_path(market, month),
                month,
                mops.decode_cp950,
                lambda html, market=market: mops.parse_revenue(html, market, month),
                label=f"{mops.REVENUE.label} {market}",
            )
            records += [{"stock_id": r["stock_id"], "revenue": r["revenue"]} for r in rows]
        frame = pl.DataFrame(records, schema={"stock_id": pl.Utf8, "revenue": pl.Int64}).with_columns(
            pl.lit(f"{month:%Y-%m}").alias("year_month"), pl.lit(deadline).alias("published_on")
        )
        return schema.conform("monthly_revenue", frame, context=f"{month:%Y-%m}").sort("stock_id")

    def financials(self, quarter_start: dt.date) -> pl.DataFrame:
        """EPS, net income and revenue for the quarter (t163sb04, year to date minus the previous quarter's)
        and equity at its end (t163sb05), for every TWSE- and TPEx-listed company."""
        if quarter_start.month not in (1, 4, 7, 10) or quarter_start.day != 1:
            raise BadMarketData(f"financials: {quarter_start} is not the first day of a fiscal quarter")
        year, quarter = quarter_start.year, (quarter_start.month - 1) // 3 + 1
        deadline = mops.statutory_deadline(year, quarter)
        self._when_due("financials", quarter_start, f"{mops.INCOME.label} {year}Q{quarter}")
        records = []
        for market in mops.MARKETS:
            year_to_date = self._statement(mops.INCOME, market, year, quarter)
            previous = self._statement(mops.INCOME, market, year, quarter - 1) if quarter > 1 else None
            balance = self._statement(mops.BALANCE, market, year, quarter)
            for code, values in mops.quarterly(year_to_date, previous).items():
                records.append(
                    {
                        "stock_id": code,
                        "eps": values.get("eps"),
                        "net_income": values.get("net_income"),
                        "revenue": values.get("revenue"),
                        "equity": balance.get(code, {}).get("equity"),
                    }
                )
        frame = pl.DataFrame(
            records,
            schema={
                "stock_id": pl.Utf8,
                "eps": pl.Float64,
                "net_income": pl.Int64,
                "revenue": pl.Int64,
                "equity": pl.Int64,
            },
        ).with_columns(pl.lit(f"{year}Q{quarter}").alias("fiscal_quarter"), pl.lit(deadline).alias("published_on"))
        return schema.conform("financials", frame, context=f"{year}Q{quarter}").sort("stock_id")

    def _when_due(self, table: str, partition: dt.date, label: str) -> None:
        """MOPS is asked only once the publication timetable says the period is complete (deadline passed)."""
        due, reason = timetable.is_due(table, partition, taipei_now(), self.settings.publication_times)
        if not due:
            raise NotPublishedYet(f"{label}: {reason}")

    def _statement(self, endpoint: twse.Endpoint, market: str, year: int, quarter: int) -> dict[str, dict]:
        parse = mops.parse_income if endpoint is mops.INCOME else mops.parse_balance
        return self._mops_answer(
            endpoint.path,
            dt.date(year, 3 * quarter - 2, 1),
            mops.decode_utf8,
            lambda html: parse(html, market, year, quarter),
            form=mops.statement_form(market, year, quarter),
            variant=market,
            label=f"{endpoint.label} {market}",
        )

    def _mops_answer(self, path: str, period: dt.date, decode, parse, *, label: str, form=None, variant: str = ""):
        """Fetch (or read from the cache), parse, and cache only what parsed; like `_fetch` for MOPS pages."""

        def answer():
            return self.http.get_json(
                self.settings.mops_base_url, path, {}, date=period, label=label, decode=decode, kind="HTML",
                form=form, variant=variant,
            )  # fmt: skip

        response = answer()
        try:
            parsed = parse(response.payload)
        except NotPublishedYet:
            raise
        except BadMarketData:
            if not response.from_cache:
                raise
            self.http.forget(response)  # a cached page the parser now rejects: ask once more
            response = answer()
            parsed = parse(response.payload)
        self.http.keep(response, verified=True)  # parsed, and the path/form names the period
        return parsed

    def has_data(self, date: dt.date) -> bool:
        """Has TWSE published the day's closing quotes? (stat OK and the 每日收盤行情 table present)."""
        details: dict = {"endpoints": [], "requests": 0, "cache_hits": 0}
        try:
            parsed, answer = self._fetch(self.settings.twse_base_url, twse, "daily_quotes", date, details)
        except BadMarketData:
            return False  # a half-published or throttled answer is not "published"
        self.http.keep(answer, no_data=parsed.no_data)
        return not parsed.no_data

    def _fetch(
        self, base_url: str, exchange, table: str, date: dt.date, details: dict
    ) -> tuple[twse.Parsed, JsonResponse]:
        """Fetch and parse one endpoint's answer; the caller decides whether to cache it (`keep`)."""
        endpoint, parse = exchange.ENDPOINTS[table], exchange.PARSERS[table]
        params = exchange.query(endpoint, date)
        answer = self.http.get_json(base_url, endpoint.path, params, date=date, label=endpoint.label)
        try:
            parsed = parse(answer.payload, date)
        except BadMarketData:
            if not answer.from_cache:
                raise
            # A cached answer the parser now rejects (the parser got stricter): drop it and ask once more.
            self.http.forget(answer)
            answer = self.http.get_json(base_url, endpoint.path, params, date=date, label=endpoint.label)
            parsed = parse(answer.payload, date)
        details["endpoints"].append(endpoint.label)
        details["requests"] += answer.requests
        details["cache_hits"] += int(answer.from_cache)
        return parsed, answer
