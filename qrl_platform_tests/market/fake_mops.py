"""A local stand-in for mops.twse.com.tw, serving pages built in the recorded shapes (invented rows).

* `GET /nas/t21/{sii|otc}/t21sc03_{ROC year}_{month}_0.html`: cp950 bytes (a name with the cp950-only
  碁, so strict big5 fails), one line of HTML laid out as the recorded page (recordings/SOURCES.md):
  出表日期 first, then per industry an outer table (產業別 / 單位：千元) around the company table, whose
  first header row is `&nbsp;` (colspan=2), 營業收入 (colspan=5), 累計營業收入 (colspan=3), 備註
  (rowspan=2) and whose second row names the other ten columns with `<br>` inside; numbers right-aligned
  with leading spaces and commas inside `<td nowrap>` (the fifth written `<Td nowrap>`), a
  `<th … colspan=2>合計</th>` row per industry, then the 全部國內上市公司合計 table. A month not published
  answers a full page with `<h3 align=center>查無資料</h3>`.
* `POST /mops/web/t163sb04` and `/mops/web/t163sb05` with MOPS's form (encodeURIComponent=1, step=1,
  firstin=1, off=1, isQuery=Y, TYPEK, year, season; anything else is HTTP 400): UTF-8 HTML, one table
  per industry template (general and bank templates, different line items), or 查無資料. The t163sb05
  layout follows the same conventions; it was not checked against a recording.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request

MONTH = dt.date(2026, 7, 1)  # the month the fixture publishes
YEAR, QUARTER = 2026, 2  # the quarter the fixture publishes (and Q1 before it)

# (industry, [(code, name, this month, last month, last year's month, MoM %, YoY %, cumulative,
#              last year's cumulative, cumulative %, note)])
SII_REVENUE = [
    ("水泥工業", [
        ("1101", "台泥", "   8,470,118", "   9,001,200", "   7,950,000", "   -5.90", "    6.54", "  55,123,456", "  50,000,000", "   10.24", "-"),
        ("1102", "亞泥", "   5,120,300", "   4,980,000", "   5,300,100", "    2.81", "   -3.39", "  33,210,987", "  34,000,000", "   -2.32", "-"),
    ]),
    ("電腦及週邊設備業", [
        ("2353", "宏碁", "  21,345,678", "  19,876,543", "  20,111,222", "    7.39", "    6.13", " 140,987,654", " 135,000,000", "    4.43", "-"),
        ("2399", "碁曜電子", "     -12,345", "       3,210", "      45,678", " -484.58", " -127.02", "     123,456", "     300,000", "  -58.84", "退貨沖銷"),
    ]),
]  # fmt: skip
OTC_REVENUE = [
    ("半導體業", [
        ("6488", "環球晶", "   5,901,234", "   5,800,000", "   6,200,000", "    1.75", "   -4.82", "  40,111,222", "  42,000,000", "   -4.50", "-"),
    ]),
]  # fmt: skip
REVENUE = {"sii": SII_REVENUE, "otc": OTC_REVENUE}

GENERAL_INCOME = [  # 一般業: 營業收入 … 淨利（淨損）歸屬於母公司業主 … 基本每股盈餘（元）
    "公司<br>代號", "公司名稱", "營業收入", "營業成本", "營業毛利（毛損）", "營業利益（損失）", "本期淨利（淨損）",
    "淨利（淨損）歸屬於母公司業主", "淨利（淨損）歸屬於非控制權益", "綜合損益總額歸屬於母公司業主", "基本每股盈餘（元）",
]  # fmt: skip
BANK_INCOME = [  # 金融業: no 營業收入; 淨收益, 本期稅後淨利（淨損）
    "公司代號", "公司名稱", "利息淨收益", "利息以外淨損益", "淨收益", "呆帳費用、承諾及保證責任準備提存",
    "本期稅後淨利（淨損）", "淨利（淨損）歸屬於母公司業主", "基本每股盈餘（元）",
]  # fmt: skip
# Year-to-date figures per (season, market): general rows then bank rows, as MOPS prints them.
INCOME = {
    (1, "sii"): (
        [
            ["1101", "台泥", "25,104,123", "20,000,000", "5,104,123", "3,000,000", "2,500,000", "2,400,000", "100,000", "2,300,000", "0.32"],
            ["2353", "宏碁", "60,000,000", "54,000,000", "6,000,000", "1,500,000", "1,300,000", "1,200,000", "100,000", "1,100,000", "0.40"],
        ],
        [["2881", "富邦金", "20,000,000", "15,000,000", "35,000,000", "1,000,000", "20,500,000", "20,000,000", "3.00"]],
    ),
    (2, "sii"): (
        [
            ["1101", "台泥", "52,000,000", "41,000,000", "11,000,000", "6,500,000", "5,600,000", "5,300,000", "300,000", "5,000,000", "0.71"],
            ["2353", "宏碁", "118,500,000", "107,000,000", "11,500,000", "2,000,000", "900,000", "-300,000", "1,200,000", "-500,000", "-0.10"],
            ["1109", "信大", "3,000,000", "2,800,000", "200,000", "50,000", "40,000", "40,000", "0", "40,000", "0.12"],
        ],
        [["2881", "富邦金", "41,000,000", "31,000,000", "72,000,000", "2,000,000", "42,000,000", "41,200,000", "6.15"]],
    ),
    (1, "otc"): ([["6488", "環球晶", "17,000,000", "11,000,000", "6,000,000", "4,000,000", "3,500,000", "3,400,000", "100,000", "3,300,000", "7.11"]], []),
    (2, "otc"): ([["6488", "環球晶", "33,500,000", "22,000,000", "11,500,000", "7,600,000", "6,600,000", "6,450,000", "150,000", "6,300,000", "13.48"]], []),
}  # fmt: skip
GENERAL_BALANCE = [
    "公司<br>代號", "公司名稱", "流動資產", "資產總計", "負債總計", "股本", "歸屬於母公司業主之權益合計",
    "非控制權益", "權益總計", "每股參考淨值",
]  # fmt: skip
BANK_BALANCE = ["公司代號", "公司名稱", "資產總計", "負債總計", "股本", "權益總額", "每股參考淨值"]
BALANCE = {
    (2, "sii"): (
        [
            ["1101", "台泥", "150,000,000", "500,000,000", "250,000,000", "75,000,000", "230,000,000", "20,000,000", "250,000,000", "30.67"],
            ["2353", "宏碁", "200,000,000", "300,000,000", "180,000,000", "30,000,000", "110,000,000", "10,000,000", "120,000,000", "36.67"],
            ["1109", "信大", "5,000,000", "9,000,000", "4,000,000", "3,300,000", "5,000,000", "0", "5,000,000", "15.15"],
        ],
        [["2881", "富邦金", "12,000,000,000", "11,400,000,000", "130,000,000", "600,000,000", "46.15"]],
    ),
    (2, "otc"): ([["6488", "環球晶", "60,000,000", "150,000,000", "70,000,000", "4,780,000", "79,000,000", "1,000,000", "80,000,000", "165.27"]], []),
}  # fmt: skip
FORM_KEYS = {"encodeURIComponent": "1", "step": "1", "firstin": "1", "off": "1", "isQuery": "Y"}


def roc(year: int) -> int:
    return year - 1911


# ------------------------------------------------------------------------------------------------ pages


def not_published_page(encoding: str) -> bytes:
    page = (
        "<html><head><title>公開資訊觀測站</title></head><body><center>"
        "<table width='100%'><tr><td>&nbsp;</td></tr></table>"
        "<h3 align=center>查無資料</h3></center></body></html>"
    )
    return page.encode(encoding)


REVENUE_HEAD = (  # the two header rows of every t21sc03 table, as the real page writes them
    "<tr><th class=tt colspan=2>&nbsp;</th><th class=tt colspan=5 >營業收入</th>"
    "<th class=tt colspan=3 >累計營業收入</th>{note}</tr>"
    "<tr><th class=tt>公司<br>代號</th><th class=tt>公司名稱</th><th class=tt>當月營收</th><th class=tt>上月營收</th>"
    "<th class=tt>去年當月營收</th><th class=tt>上月比較<br>增減(%)</th><th class=tt >去年同月<br>增減(%)</th>"
    "<th class=tt >當月累計營收</th><th class=tt >去年累計營收</th><th class=tt >前期比較<br>增減(%)</th></tr>"
)
REVENUE_TABLE = "<table  width=100% border=5 bordercolor='#FF6600' bgcolor='#FFFFFF'>"


def revenue_page(market: str, month: dt.date, printed: dt.date) -> bytes:
    """t21sc03 in one line of cp950 HTML, laid out as the real page: 出表日期 first, then per industry an
    outer table (產業別 / 單位：千元) holding the company table, whose first header row is `&nbsp;`
    (colspan=2), 營業收入 (colspan=5), 累計營業收入 (colspan=3) and 備註 (rowspan=2) and whose second row
    names the other ten columns; each row's fifth number cell is written `<Td nowrap>`. The closing
    全部國內上市公司合計 table has 備註 commented out of its header and ten cells."""
    kind = "上市" if market == "sii" else "上櫃"
    title = f"{kind}公司{roc(month.year)}年{month.month}月份(累計與當月)營業收入統計表"
    parts = [
        "<html><script src='/nocopy.js'></script><head><meta http-equiv='Content-Type' "
        f"content='text/html;charset=big5'></head><body><center><center><font size='5'><b>{title}</b></font>"
        "<h3>本資料由各公司提供</h3>"
        f"<div class=tt style='width:100%;text-align:left;'>出表日期：{roc(printed.year)}/{printed:%m/%d}"
        "<!--01:49:20--></div><table border=0 width=100%><tr><td><br>"
    ]
    grand = [0] * 5
    for industry, rows in REVENUE[market]:
        parts.append(
            f"<table border=0 width=100%><tr><th class=tt align=left >產業別：{industry}</th>"
            f"<th class=tt align=right >單位：千元</th></tr><tr><td colspan=2>{REVENUE_TABLE}"
            + REVENUE_HEAD.format(note="<th rowspan=2 class=tt>備註</th>")
        )
        total = [0] * 5
        for code, name, *numbers, note in rows:
            cells = "".join(
                f"<{'Td' if position == 4 else 'td'} nowrap>{value}</td>" for position, value in enumerate(numbers)
            )
            parts.append(
                f"<tr align=right><td align=center>{code}</td><td align=left>{name}</td>{cells}"
                f"<td align=center>{note}</td></tr>"
            )
            for i, position in enumerate((0, 1, 2, 5, 6)):
                total[i] += int(numbers[position].replace(",", ""))
        grand = [g + t for g, t in zip(grand, total, strict=True)]
        parts.append(_total_row("合計", total) + "<td>&nbsp;</td></tr></table></td></tr></table><br>")
    parts.append(
        REVENUE_TABLE
        + REVENUE_HEAD.format(note="<!-- <th rowspan=2 class=tt>備註</th> -->")
        + _total_row(f"全部國內{kind}公司合計", grand)
        + "</table></td></tr></table></body></html>"
    )
    return "".join(parts).encode("cp950")


def _total_row(label: str, total: list[int]) -> str:
    """A 合計 row up to its ten cells (the industry tables add the 備註 cell)."""
    this, last, last_year, cumulative, last_cumulative = (f"{v:>27,}" for v in total)
    values = [this, last, last_year, "", "", cumulative, last_cumulative, ""]
    return f"<tr align=right><th class=tt nowrap colspan=2 align=center>{label}</th>" + "".join(
        f"<td nowrap>{v or '&nbsp;'}</td>" for v in values
    )


def statement_page(title: str, templates: list[tuple[list[str], list[list[str]]]]) -> bytes:
    """t163sb04/05: UTF-8, one hasBorder table per industry template."""
    parts = [
        "<html><head><meta charset='utf-8'><title>公開資訊觀測站</title></head><body>"
        f"<table class='noBorder'><tr><td class='compName'><b>{title}</b></td></tr></table><center>"
    ]
    for fields, rows in templates:
        if not rows:
            continue
        head = "".join(f"<th align='center'>{name}</th>" for name in fields)
        body = "".join(
            "<tr class='even'>"
            + "".join(
                f"<td style='text-align:{'left' if i < 2 else 'right'} !important;'>{value}</td>"
                for i, value in enumerate(row)
            )
            + "</tr>"
            for row in rows
        )
        parts.append(f"<table class='hasBorder' align='center'><tr class='tblHead'>{head}</tr>{body}</table><br>")
    parts.append("</center></body></html>")
    return "".join(parts).encode("utf-8")


# ---------------------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    form: dict[str, str]
    at: float


class _MopsHost(LocalHttpServer):
    """The HTTP side of FakeMops: GET revenue pages, POST the statement forms."""

    def __init__(self, mops: FakeMops):
        super().__init__()
        self.mops = mops

    def answer(self, request: Request) -> Reply:
        form = {}
        if request.method == "POST":
            form = dict(parse_qsl(request.body.decode("ascii"), keep_blank_values=True))
        status, content_type, body = self.mops._answer(request.method, request.path, form)
        return Reply(status, body, content_type=content_type)


class FakeMops:
    def __init__(self):
        self.requests: list[Seen] = []
        self.published_months: set[tuple[str, dt.date]] = {(m, MONTH) for m in REVENUE}
        self.printed = dt.date(2026, 8, 12)
        self.published_quarters: set[tuple[int, int]] = {(YEAR, 1), (YEAR, 2)}
        self.overrides: dict[str, bytes] = {}  # path → body served instead (broken layouts)
        self._lock = threading.Lock()
        self._host = _MopsHost(self).start()

    @property
    def base_url(self) -> str:
        return self._host.base_url

    def stop(self) -> None:
        self._host.stop()

    def count(self, path_part: str = "") -> int:
        return sum(1 for r in self.requests if path_part in r.path)

    def _answer(self, method: str, path: str, form: dict[str, str]) -> tuple[int, str, bytes]:
        with self._lock:
            self.requests.append(Seen(method, path, form, time.time()))
        if path in self.overrides:
            return 200, "text/html", self.overrides[path]
        if method == "GET" and path.startswith("/nas/t21/"):
            return self._revenue(path)
        if method == "POST" and path in ("/mops/web/t163sb04", "/mops/web/t163sb05"):
            return self._statement(path, form)
        return 404, "text/plain", b"not found"

    def _revenue(self, path: str):
        try:
            market = path.split("/")[3]
            roc_year, month = path.rsplit("/", 1)[1].removeprefix("t21sc03_").removesuffix("_0.html").split("_")
            wanted = dt.date(int(roc_year) + 1911, int(month), 1)
        except (IndexError, ValueError):
            return 404, "text/plain", b"not found"
        if (market, wanted) not in self.published_months or wanted != MONTH:
            return 200, "text/html", not_published_page("cp950")
        return 200, "text/html", revenue_page(market, wanted, self.printed)

    def _statement(self, path: str, form: dict[str, str]):
        expected = set(FORM_KEYS) | {"TYPEK", "year", "season"}
        if set(form) != expected or any(form[k] != v for k, v in FORM_KEYS.items()) or form["TYPEK"] not in REVENUE:
            return 400, "text/plain", f"bad form {form}".encode()
        year, season, market = int(form["year"]) + 1911, int(form["season"]), form["TYPEK"]
        if (year, season) not in self.published_quarters or year != YEAR:
            return 200, "text/html", not_published_page("utf-8")
        if path.endswith("t163sb04"):
            general, banks = INCOME.get((season, market), ([], []))
            templates = [(GENERAL_INCOME, general), (BANK_INCOME, banks)]
            title = "綜合損益表"
        else:
            general, banks = BALANCE.get((season, market), ([], []))
            templates = [(GENERAL_BALANCE, general), (BANK_BALANCE, banks)]
            title = "資產負債表"
        return 200, "text/html; charset=utf-8", statement_page(title, templates)


# Q1's balance sheets: the same invented figures (only Q2's are asserted in detail).
BALANCE[(1, "sii")] = BALANCE[(2, "sii")]
BALANCE[(1, "otc")] = BALANCE[(2, "otc")]
