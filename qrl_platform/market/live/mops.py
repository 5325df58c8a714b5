"""MOPS (公開資訊觀測站) parsers: monthly revenue pages and the quarterly summary reports.

Pure functions: bytes or HTML text (+ the period asked) → rows, or `NotPublishedYet` for the 查無資料
page. Everything that does not look like what MOPS publishes (shared/reference/exchange-payloads.md,
§ MOPS) raises `BadMarketData` naming the endpoint, the period and the field.

* Monthly revenue, `GET /nas/t21/{sii|otc}/t21sc03_{ROC year}_{month}_0.html`: Big5 with cp950
  extensions (Python's strict `big5` fails on e.g. 宏碁), one line of HTML, 出表日期 near the top, one
  table per industry with two header rows (備註 spans both, 營業收入 and 累計營業收入 group the columns
  named in the second row: read as a grid, `header_grid`), header cells with `<br>`, numbers with
  leading spaces and commas, a 合計 row per industry, the page ending with 全部國內上市公司合計 (上櫃 for
  otc). Revenue in thousand TWD. Checked against recordings (qrl_platform_tests/market/recordings).
* Income statement summary, `POST /mops/web/t163sb04`, and balance-sheet summary `POST
  /mops/web/t163sb05`: UTF-8 HTML, one table per industry template (general, banks, insurers,
  securities firms …), each with 公司代號 and 公司名稱 and its own line items, so columns are found by a
  short list of accepted header names per item; their header rows go through the same grid. t163sb04
  was checked against recordings of the full page (the ajax part sits inside it); no recording of
  t163sb05 was found. A quarter not filed yet answers 查無資料 (ajax) or 查詢無資料! (the full page).

The income statement summary reports the year to date (Q2 = January–June); `quarterly()` turns it into
the quarter by subtracting the previous quarter's year-to-date figures, as is usual for these reports.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from qrl_platform.market.live.twse import NULL_TOKENS, Endpoint, NotPublishedYet
from qrl_platform.market.schema import BadMarketData

# The deadlines live in the publication timetable; re-exported for the source.
from qrl_platform.market.timetable import revenue_deadline as revenue_deadline
from qrl_platform.market.timetable import statutory_deadline as statutory_deadline

MARKETS = ("sii", "otc")  # sii = TWSE-listed, otc = TPEx-listed
REVENUE = Endpoint("MOPS", "t21sc03", "/nas/t21/{market}/t21sc03_{roc_year}_{month}_0.html")
INCOME = Endpoint("MOPS", "t163sb04", "/mops/web/t163sb04")
BALANCE = Endpoint("MOPS", "t163sb05", "/mops/web/t163sb05")
NOT_PUBLISHED = "查無資料"
# The full t163sb04/05 page (not its ajax part) says it this way for a quarter not filed yet.
NOT_PUBLISHED_SPELLINGS = (NOT_PUBLISHED, "查詢無資料")
PRINTED_ON = "出表日期"
# The last row of a complete t21sc03 page, per market.
GRAND_TOTAL = {"sii": "全部國內上市公司合計", "otc": "全部國內上櫃公司合計"}

# Accepted header names (first present wins), normalised by `header()`: whitespace removed, full-width
# parentheses kept as MOPS writes them.
REVENUE_COLUMNS = {"code": ("公司代號",), "name": ("公司名稱",), "revenue": ("當月營收", "營業收入當月營收")}
INCOME_COLUMNS = {
    "code": ("公司代號",),
    "name": ("公司名稱",),
    "eps": ("基本每股盈餘（元）", "基本每股盈餘(元)", "每股盈餘（元）"),
    # Attributable to the parent's owners first: that is what EPS and ROE are computed on.
    "net_income": (
        "淨利（淨損）歸屬於母公司業主",
        "本期淨利（淨損）歸屬於母公司業主",
        "本期淨利（淨損）",
        "本期稅後淨利（淨損）",
        "淨利（損）",
    ),
}
# Revenue is called differently per template (banks report net revenue); a template with none of
# these leaves the quarter's revenue null rather than guessing.
INCOME_OPTIONAL = {"revenue": ("營業收入", "收益", "淨收益", "收入")}
BALANCE_COLUMNS = {
    "code": ("公司代號",),
    "name": ("公司名稱",),
    "equity": ("歸屬於母公司業主之權益合計", "歸屬於母公司業主之權益", "權益總額", "權益合計", "權益總計"),
}
_CODE = re.compile(r"^[0-9A-Z]{4,6}$")
_PRINTED = re.compile(PRINTED_ON + r"\s*[:：]?\s*(\d{2,3})/(\d{1,2})/(\d{1,2})")


def roc_year(year: int) -> int:
    return year - 1911


def revenue_path(market: str, month: dt.date) -> str:
    return REVENUE.path.format(market=market, roc_year=roc_year(month.year), month=month.month)


def statement_form(market: str, year: int, quarter: int) -> dict[str, str]:
    """The form MOPS's own page posts for t163sb04/t163sb05."""
    return {
        "encodeURIComponent": "1",
        "step": "1",
        "firstin": "1",
        "off": "1",
        "isQuery": "Y",
        "TYPEK": market,
        "year": str(roc_year(year)),
        "season": str(quarter),
    }


def decode_cp950(body: bytes) -> str:
    """t21sc03 is Big5 with Microsoft's cp950 extensions; undecodable bytes mean a broken answer."""
    try:
        return body.decode("cp950")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not cp950 text ({exc})") from None


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from None


# ------------------------------------------------------------------------------------------ HTML tables


@dataclass
class Cell:
    tag: str  # "td" | "th"
    text: str
    colspan: int = 1
    rowspan: int = 1


@dataclass
class Table:
    rows: list[list[Cell]] = field(default_factory=list)


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cells (nested tables are tables of their own).

    MOPS's markup is loose (`<Td nowrap>`, unclosed cells); html.parser lowercases tag names, and a new
    cell or row closes the previous one."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self._open: list[tuple[Table, list[Cell] | None, Cell | None]] = []
        self.text: list[str] = []  # all text outside cells too (查無資料, 出表日期)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            table = Table()
            self.tables.append(table)
            self._open.append((table, None, None))
        elif not self._open:
            return
        elif tag == "tr":
            table, _, _ = self._open[-1]
            row: list[Cell] = []
            table.rows.append(row)
            self._open[-1] = (table, row, None)
        elif tag in ("td", "th"):
            table, row, _ = self._open[-1]
            if row is None:  # a cell outside any <tr>
                row = []
                table.rows.append(row)
            values = dict(attrs)
            cell = Cell(tag, "", _span(values.get("colspan")), _span(values.get("rowspan")))
            row.append(cell)
            self._open[-1] = (table, row, cell)

    def handle_endtag(self, tag):
        if tag == "table" and self._open:
            self._open.pop()
        elif tag in ("td", "th") and self._open:
            table, row, _ = self._open[-1]
            self._open[-1] = (table, row, None)

    def handle_data(self, data):
        self.text.append(data)
        if self._open and self._open[-1][2] is not None:
            self._open[-1][2].text += data


def _span(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def read_tables(html: str) -> tuple[list[Table], str]:
    parser = _Tables()
    parser.feed(html)
    parser.close()
    return parser.tables, "".join(parser.text)


def header(text: str) -> str:
    """A header cell's name: `公司<br>代號` reads 公司代號, padding and &nbsp; removed."""
    return "".join(text.replace("\xa0", " ").split())


def header_grid(rows: list[list[Cell]]) -> list[list[str]]:
    """Header rows as a grid of names, one per (row, column): a cell spanning n columns and m rows fills
    every slot it covers, and a cell goes to the first slot of its row that no cell above still covers."""
    grid: list[list[str | None]] = [[] for _ in rows]
    for r, row in enumerate(rows):
        column = 0
        for cell in row:
            while column < len(grid[r]) and grid[r][column] is not None:
                column += 1  # covered by a rowspan from a row above
            for line in grid[r : r + cell.rowspan]:
                line.extend([None] * (column + cell.colspan - len(line)))
                line[column : column + cell.colspan] = [header(cell.text)] * cell.colspan
            column += cell.colspan
    width = max((len(line) for line in grid), default=0)
    return [[name or "" for name in line] + [""] * (width - len(line)) for line in grid]


def leaf_columns(table: Table) -> tuple[list[str], int]:
    """The column names of a table whose header is its leading rows of <th>, and the index of its first
    data row.

    The header rows are read into a grid (`header_grid`) and each column is named by its lowest
    non-empty slot. So t21sc03's two rows — `&nbsp;` (colspan=2), 營業收入 (colspan=5), 累計營業收入
    (colspan=3), 備註 (rowspan=2) over 公司代號 … 前期比較增減(%) — give eleven names ending in 備註, and a
    title row such as 「產業別：水泥工業 … 單位：千元」 above them names nothing."""
    head = 0
    while head < len(table.rows) and table.rows[head] and all(c.tag == "th" for c in table.rows[head]):
        head += 1
    grid = header_grid(table.rows[:head])
    names = [next((name for name in reversed(column) if name), "") for column in zip(*grid, strict=True)]
    return names, head


# ---------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Period:
    """Endpoint + market + period, so every error message says where it comes from."""

    endpoint: Endpoint
    market: str
    period: str  # "2026-08" or "2026Q2"

    def bad(self, message: str) -> BadMarketData:
        return BadMarketData(f"{self.endpoint.label} {self.market} {self.period}: {message}")


def find(names: list[str], accepted: dict[str, tuple[str, ...]], where: Period, *, required: bool = True):
    """Column index per key by accepted names; a missing required key fails naming the field."""
    out: dict[str, int] = {}
    for key, options in accepted.items():
        hit = next((names.index(option) for option in options if option in names), None)
        if hit is None:
            if required:
                spelled = " or ".join(repr(o) for o in options)
                raise where.bad(f"field {spelled} is missing from a table with columns {names}")
            continue
        out[key] = hit
    return out


def amount(raw: str, where: Period, field_name: str, code: str, *, integer: bool) -> int | float | None:
    """'   1,234,567' → 1234567; '-1,234' stays negative; placeholders → None."""
    cleaned = header(raw).replace(",", "")
    if cleaned in NULL_TOKENS:
        return None
    try:
        value = float(cleaned)
    except ValueError:
        raise where.bad(f"field {field_name!r} is not a number ({raw!r}) for stock {code}") from None
    if integer:
        if value != int(value):
            raise where.bad(f"field {field_name!r} should be a whole number, got {raw!r} for stock {code}")
        return int(value)
    return value


def _company_rows(table: Table, names: list[str], first: int, code_at: int, where: Period):
    """(code, cells) of each company row; total rows (a <th> 合計 or a code cell reading 合計) are dropped."""
    for row in table.rows[first:]:
        if not row or row[0].tag == "th":
            continue  # 合計 rows: <th … colspan=2>合計</th>
        code = header(row[code_at].text) if code_at < len(row) else ""
        if "合計" in code or (len(row) > 1 and "合計" in header(row[1].text) and not _CODE.match(code)):
            continue
        if len(row) != len(names):
            raise where.bad(f"row of stock {code or '?'} has {len(row)} cells, expected {len(names)} ({names})")
        if not _CODE.match(code):
            raise where.bad(f"field '公司代號' is not a stock code ({row[code_at].text!r})")
        yield code, row


def _company_tables(tables: list[Table], text: str, where: Period, kind: str) -> list[tuple[Table, list[str], int]]:
    """(table, column names, first data row) of each table with a 公司代號 column. None at all is MOPS's
    查無資料 page (not published yet) or, without that phrase, not the report asked for."""
    found = []
    for table in tables:
        names, first = leaf_columns(table)
        if "公司代號" in names:
            found.append((table, names, first))
    if found:
        return found
    said = next((spelling for spelling in NOT_PUBLISHED_SPELLINGS if spelling in text), None)
    if said:
        raise NotPublishedYet(
            f"{where.endpoint.label} {where.market} {where.period}: MOPS answers {said} (not published yet)"
        )
    raise where.bad(f"no table with a '公司代號' column: not a {kind}")


def printed_on(text: str, where: Period) -> dt.date:
    """The page's 出表日期 (ROC): when the page was printed — a completeness marker, not a publication date."""
    match = _PRINTED.search(text)
    if not match:
        raise where.bad(f"field {PRINTED_ON!r} is missing: the page is incomplete")
    year, month, day = (int(g) for g in match.groups())
    try:
        return dt.date(year + 1911, month, day)
    except ValueError:
        raise where.bad(f"field {PRINTED_ON!r} is not a date ({match.group(0)!r})") from None


def parse_revenue(html: str, market: str, month: dt.date) -> list[dict]:
    """One market's t21sc03 page → [{stock_id, name, revenue}] (thousand TWD), totals dropped."""
    where = Period(REVENUE, market, f"{month:%Y-%m}")
    tables, text = read_tables(html)
    found = _company_tables(tables, text, where, "revenue report")
    printed = printed_on(text, where)
    grand_total = GRAND_TOTAL[market]
    if grand_total not in text:  # the page's last row: 出表日期 comes first, so only this shows the end arrived
        raise where.bad(f"field {grand_total!r} is missing: the page is incomplete")
    month_end = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    if printed <= month_end:
        raise where.bad(f"field {PRINTED_ON!r} is {printed}, before the month ended: not this month's report")
    records: list[dict] = []
    for table, names, first in found:
        at = find(names, REVENUE_COLUMNS, where)
        for code, row in _company_rows(table, names, first, at["code"], where):
            revenue = amount(row[at["revenue"]].text, where, "當月營收", code, integer=True)
            if revenue is None:
                raise where.bad(f"field '當月營收' is empty ({row[at['revenue']].text!r}) for stock {code}")
            records.append({"stock_id": code, "name": header(row[at["name"]].text), "revenue": revenue})
    return records


def parse_statement(
    html: str,
    endpoint: Endpoint,
    market: str,
    quarter: str,
    columns: dict[str, tuple[str, ...]],
    optional: dict[str, tuple[str, ...]] | None = None,
    integers: frozenset[str] = frozenset(),
) -> dict[str, dict]:
    """A t163sb04/05 page → {stock_id: {key: value}} across every industry template on it."""
    where = Period(endpoint, market, quarter)
    tables, text = read_tables(html)
    out: dict[str, dict] = {}
    for table, names, first in _company_tables(tables, text, where, "summary report"):
        at = find(names, columns, where)
        at.update(find(names, optional or {}, where, required=False))
        for code, row in _company_rows(table, names, first, at["code"], where):
            if code in out:
                raise where.bad(f"stock {code} appears in two tables")
            values: dict = {"name": header(row[at["name"]].text)}
            for key, position in at.items():
                if key in ("code", "name"):
                    continue
                values[key] = amount(row[position].text, where, names[position], code, integer=key in integers)
            out[code] = values
    return out


def parse_income(html: str, market: str, year: int, quarter: int) -> dict[str, dict]:
    """t163sb04: year-to-date eps (TWD), net_income and revenue (thousand TWD) per company."""
    return parse_statement(
        html, INCOME, market, f"{year}Q{quarter}", INCOME_COLUMNS, INCOME_OPTIONAL, frozenset({"net_income", "revenue"})
    )


def parse_balance(html: str, market: str, year: int, quarter: int) -> dict[str, dict]:
    """t163sb05: equity (thousand TWD) at the quarter's end per company."""
    return parse_statement(html, BALANCE, market, f"{year}Q{quarter}", BALANCE_COLUMNS, None, frozenset({"equity"}))


def quarterly(year_to_date: dict[str, dict], previous: dict[str, dict] | None) -> dict[str, dict]:
    """The quarter's own eps/net_income/revenue: this year-to-date minus the previous quarter's (None for Q1).

    A company without a previous year-to-date row (listed during the year) gets nulls rather than a
    half-year passed off as a quarter."""
    if previous is None:
        return {code: dict(values) for code, values in year_to_date.items()}
    out = {}
    for code, values in year_to_date.items():
        before = previous.get(code)
        row = dict(values)
        for key in ("eps", "net_income", "revenue"):
            now, then = values.get(key), (before or {}).get(key)
            row[key] = None if now is None or then is None else now - then
        if row.get("eps") is not None:
            row["eps"] = round(row["eps"], 2)
        out[code] = row
    return out
