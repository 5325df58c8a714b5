"""Local stand-ins for the six corporate-action lists of www.twse.com.tw and www.tpex.org.tw.

They serve the real recordings in recordings/corporate_actions/ (SOURCES.md), cut to the range a request
asks for, with the answer's own range fields (TWSE strDate/endDate, TPEx `date`) rewritten to it, the way
the hosts answer any range. An event-free range gets each endpoint's recorded empty answer (TWT49U and
TWTAUU: the 沒有符合條件的資料 stat; TWTB8U: stat OK with data []; TPEx: tables[0].data []).

The traps of the real hosts are reproduced: exDailyQ asked with a date without slashes, or by POST,
silently answers *today's* events (`today` below); revivt and pvChgRslt answer stat 參數錯誤 instead.
`answer_today = True` makes exDailyQ answer today's events even to a correct query (the check must
not depend on how we asked).

TWT49UDetail has no public recording: its answer here follows the shape used by a third-party test
(fields 股票代號 / 股票名稱 / (每股配發現金股利)除息 / (增資配股) 除權, amounts as "2.0 元／股") and its
amounts are invented (DETAIL_CASH), so only the parsing of that shape is exercised, not TWSE's values.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path

from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request
from qrl_platform_tests.market.recorded import recorded_body

RECORDINGS = Path(__file__).parent / "recordings" / "corporate_actions"
# The recorded bodies are third-party data and stay out of git (recordings/.gitignore): each is looked for
# here, then in shared/recordings/market/corporate_actions/ beside the checkout, checked against its
# SHA-256 (as listed in SOURCES.md), and a test needing one is skipped, naming it, when neither has it.
MANIFEST = {
    "tpex_exdailyq_20260601_20260902_excerpt.json": "8e910a6ced5950f0ee70c30bc6447bec662a1da46ddb6e50eb4ca4d5e053ddca",
    "tpex_exdailyq_20260829_20260830_empty.json": "5f4371014e33af9935c25bb0583116c7b4f5a6ec47c172b26daffed387e527ac",
    "tpex_pvchgrslt_20190101_20260902.json": "9752b30de3e9006dfed5bb45df243c5208bdeab3d1598c889e62e34fe81cd935",
    "tpex_revivt_20260101_20260902.json": "f2455c76b24f3ca4b35a800ddaf58d0287916f443e1e22bd3b26603c762e2ee1",
    "twse_twt49u_20260601_20260902_excerpt.json": "eca250d9f335197f9c5571aa7a96bc6949b6b9efe132d80452ab58bdf886113f",
    "twse_twt49u_20260829_20260830_empty.json": "2bc084ac1baf83d0dcbfd05912fa194882fa4364bf03d32dfbf56a0bcd3f9098",
    "twse_twtauu_20260101_20260902.json": "9f33601fd669b294c102a61580f751d29e30f5e5431ad11cc75f3a724e8d523d",
    "twse_twtb8u_20200101_20260902.json": "ae56fc8c1c24b3513b3c3d996a259bab8322d9e63730e9c21d5affa78c37ba1b",
    "twse_twtb8u_20260829_20260830_empty.json": "06a88e4b7e9c62116aabd3e94c0f53f6b28d19c6902e1e158368cca5a620ba31",
}
TWSE_FILES = {
    "/rwd/zh/exRight/TWT49U": (
        "twse_twt49u_20260601_20260902_excerpt.json",
        "twse_twt49u_20260829_20260830_empty.json",
    ),
    "/rwd/zh/reducation/TWTAUU": ("twse_twtauu_20260101_20260902.json", "twse_twt49u_20260829_20260830_empty.json"),
    "/rwd/zh/change/TWTB8U": ("twse_twtb8u_20200101_20260902.json", "twse_twtb8u_20260829_20260830_empty.json"),
}
TPEX_FILES = {
    "/www/zh-tw/bulletin/exDailyQ": "tpex_exdailyq_20260601_20260902_excerpt.json",
    "/www/zh-tw/bulletin/revivt": "tpex_revivt_20260101_20260902.json",
    "/www/zh-tw/bulletin/pvChgRslt": "tpex_pvchgrslt_20190101_20260902.json",
}
DETAIL_PATH = "/rwd/zh/exRight/TWT49UDetail"
DETAIL_CASH = {("1583", "20260826"): "2.0 元／股"}  # invented: no recording of TWT49UDetail exists


def recording(name: str) -> bytes:
    return recorded_body(name, MANIFEST, "corporate_actions")


def load(name: str) -> dict:
    return json.loads(recording(name).decode("utf-8"))


def roc_to_date(value: str) -> dt.date:
    digits = [int(x) for x in re.findall(r"\d+", value)]
    if len(digits) == 1:  # 1150112
        raw = str(digits[0])
        digits = [int(raw[:-4]), int(raw[-4:-2]), int(raw[-2:])]
    return dt.date(digits[0] + 1911, digits[1], digits[2])


class _Host(LocalHttpServer):
    def __init__(self, owner: FakeCorporateActions, market: str):
        super().__init__()
        self.owner, self.market = owner, market

    def answer(self, request: Request) -> Reply:
        return self.owner.answer(self.market, request)


class FakeCorporateActions:
    def __init__(self, today: dt.date = dt.date(2026, 6, 11)):
        self.bodies = {name: load(name) for name in MANIFEST}  # skips the test when a recording is absent
        self.today = today
        self.answer_today = False
        self.requests: list[tuple[str, str, dict]] = []
        self.twse, self.tpex = _Host(self, "TWSE"), _Host(self, "TPEx")
        self.twse.start()
        self.tpex.start()

    def stop(self) -> None:
        self.twse.stop()
        self.tpex.stop()

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.requests if p == path)

    def answer(self, market: str, request: Request) -> Reply:
        self.requests.append((request.method, request.path, dict(request.query)))
        if market == "TWSE":
            return self._twse(request)
        return self._tpex(request)

    def _twse(self, request: Request) -> Reply:
        query = request.query
        if request.path == DETAIL_PATH:
            return _json(self._detail(query.get("STK_NO", ""), query.get("T", "")))
        if request.path not in TWSE_FILES or query.get("response") != "json":
            return Reply(404, b"<html>404</html>", content_type="text/html")
        try:
            start, end = (dt.datetime.strptime(query[k], "%Y%m%d").date() for k in ("startDate", "endDate"))
        except (KeyError, ValueError):
            return _json({"stat": "很抱歉，沒有符合條件的資料!"})
        full, empty = TWSE_FILES[request.path]
        payload = copy.deepcopy(self.bodies[full])
        payload["data"] = [row for row in payload["data"] if start <= roc_to_date(row[0]) <= end]
        if not payload["data"]:
            return _json(self.bodies[empty])
        if "strDate" in payload:
            payload["strDate"], payload["endDate"] = f"{start:%Y%m%d}", f"{end:%Y%m%d}"
        return _json(payload)

    def _detail(self, code: str, day: str) -> dict:
        cash = DETAIL_CASH.get((code, day))
        if cash is None:
            return {"stat": "很抱歉，沒有符合條件的資料!"}
        return {
            "stat": "OK",
            "fields": ["股票代號", "股票名稱", "(每股配發現金股利)除息", "(增資配股) 除權"],
            "data": [[f"{code}  ", "名稱", cash, ""]],
        }

    def _tpex(self, request: Request) -> Reply:
        if request.path not in TPEX_FILES:
            return Reply(
                404, b"<html>404 - \xe8\xad\x89\xe5\x88\xb8\xe6\xab\x83\xe6\xaa\xaf</html>", content_type="text/html"
            )
        query = request.query
        slashed = all(re.fullmatch(r"\d{4}/\d{2}/\d{2}", query.get(k, "")) for k in ("startDate", "endDate"))
        exdaily = request.path.endswith("exDailyQ")
        if not slashed or request.method != "GET":
            if not exdaily:
                return _json({"stat": "參數錯誤"})
            return _json(self._tpex_range(request.path, self.today, self.today))
        start, end = (dt.datetime.strptime(query[k], "%Y/%m/%d").date() for k in ("startDate", "endDate"))
        if exdaily and self.answer_today:
            return _json(self._tpex_range(request.path, self.today, self.today))
        return _json(self._tpex_range(request.path, start, end))

    def _tpex_range(self, path: str, start: dt.date, end: dt.date) -> dict:
        payload = copy.deepcopy(self.bodies[TPEX_FILES[path]])
        table = payload["tables"][0]
        table["data"] = [row for row in table["data"] if start <= roc_to_date(row[0]) <= end]
        table["totalCount"] = len(table["data"])
        payload["date"] = f"{start:%Y%m%d}~{end:%Y%m%d}"
        return payload


def _json(payload: dict) -> Reply:
    return Reply(200, json.dumps(payload, ensure_ascii=False).encode(), content_type="application/json; charset=utf-8")
