"""Secrets never reach a run log, an event's metadata, the instance's files or the UI's GraphQL answers.

Distinctive fake secrets are put in the environment (MEXC key and secret, Slack and SMS webhook URLs,
SMS token, SMTP password, the warehouse database password) and a representative set of runs goes
through one Dagster instance: the daily chain on the demo market, the QRL quarter hour in live mode
against the fake MEXC with execution on (an order placed, a fault, a 700003 resync), and alerts
through the local Slack, SMS and SMTP servers whose text carries a secret. Then everything is scanned
for every secret: each run's event log (messages and metadata, serialised whole), every file under
DAGSTER_HOME (run and event storage, compute logs) and QRL_HOME, what the runs printed, and the
GraphQL answers of the UI's resource pages and run-config pages from a dagster-webserver on the same
instance.
"""

# No `from __future__ import annotations`: Dagster reads the asset's real annotations.
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from qrl_platform.defs.resources import AlertsResource
from qrl_platform_tests.alerts.local_servers import SmtpServer, WebhookServer
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.reliability.figures import Figures
from qrl_platform_tests.servers import free_port, stop_process
from qrl_platform_tests.servers import webserver_graphql_text as graphql
from qrl_platform_tests.treasury.fake_mexc import FakeMexc

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
MEXC_KEY = "mexckey-Rl7Q3zX9uT"
MEXC_SECRET = "mexcsecret-Hk2Vw8PdQe"
SLACK_TOKEN_PATH = "/services/T0QRL/B0QRL/slackhook-Nq4Ty6EwLm"
SMS_TOKEN_PATH = "/sms/smshook-Lp3Zx7CvBn"
SMS_TOKEN = "smstoken-Wd5Rb1KaYu"
SMTP_USER = "alerts@desk.example"
SMTP_PASSWORD = "smtppass-Gj8Mn2QsOi"
DB_PASSWORD = "dbpass-Xc6Vf9TyPa"
DEMO_END = "2024-11-01"

RESOURCES_QUERY = """
{
  allTopLevelResourceDetailsOrError(repositorySelector: {repositoryLocationName: "qrl_platform",
                                                         repositoryName: "__repository__"}) {
    __typename
    ... on ResourceDetailsList {
      results {
        name description resourceType
        configFields { name description configType { key } defaultValueAsJson }
        configuredValues { key value type }
        nestedResources { name type }
      }
    }
  }
}
"""
RUNS_QUERY = """
{
  runsOrError(limit: 100) {
    __typename
    ... on Runs {
      results { runId jobName status runConfigYaml tags { key value } assetSelection { path } }
    }
  }
}
"""
RUN_LOGS_QUERY = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId, limit: 10000) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}
"""


@dg.asset
def alerting_asset(context: dg.AssetExecutionContext, alerts: AlertsResource) -> dg.MaterializeResult:
    """Sends an alert whose text carries the warehouse URL, password included (set by the test)."""
    report = alerts.send(
        "ERROR", "warehouse unreachable", os.environ["QRL_SECRETS_TEST_MESSAGE"], source="secrets-test"
    )
    outcome = {result.channel: f"{result.status} {result.detail}".strip() for result in report.results}
    context.log.info(f"alert outcome per channel: {outcome}")
    return dg.MaterializeResult(metadata={"channels": outcome, "alert_text": report.alert.message})


def secrets(slack: WebhookServer, sms: WebhookServer) -> dict[str, str]:
    """Every secret, and the distinctive part of each URL (a token inside a URL leaks on its own)."""
    return {
        "MEXC_API_KEY": MEXC_KEY,
        "MEXC_API_SECRET": MEXC_SECRET,
        "QRL_SLACK_WEBHOOK_URL": slack.url(SLACK_TOKEN_PATH),
        "slack webhook token": "slackhook-Nq4Ty6EwLm",
        "QRL_SMS_WEBHOOK_URL": sms.url(SMS_TOKEN_PATH),
        "sms webhook token": "smshook-Lp3Zx7CvBn",
        "QRL_SMS_TOKEN": SMS_TOKEN,
        "QRL_SMTP_PASSWORD": SMTP_PASSWORD,
        "warehouse database password": DB_PASSWORD,
    }


def find(text: str, named: dict[str, str]) -> list[str]:
    forms = {
        name: {value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]} for name, value in named.items()
    }
    return [name for name, variants in forms.items() if any(variant in text for variant in variants)]


def start_webserver(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{base}/server_info", timeout=5).read()
            return process, base
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process, timeout=20)
                raise AssertionError("dagster-webserver did not start:\n" + log_path.read_text()) from None
            time.sleep(0.5)


def test_no_secret_reaches_logs_metadata_storage_or_the_ui(tmp_path, postgres_url, monkeypatch, capfd, record):
    from qrl_platform import cli
    from qrl_platform.definitions import defs
    from qrl_platform.defs.treasury.schedules import just_finished_quarter_hour

    dagster_home, qrl_home = tmp_path / "dagster", tmp_path / "qrl"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        (ROOT / "dagster.yaml")
        .read_text()
        .replace("base_dir: .qrl/dagster_storage", f"base_dir: {dagster_home}/storage")
    )
    warehouse_url = postgres_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in warehouse_url  # the test server trusts local connections, the URL still carries it

    with (
        WebhookServer() as slack,
        WebhookServer() as sms,
        SmtpServer(user=SMTP_USER, password=SMTP_PASSWORD) as smtp,
        FakeMexc(api_key=MEXC_KEY, api_secret=MEXC_SECRET) as mexc,
    ):
        named = secrets(slack, sms)
        env = {
            "DAGSTER_HOME": str(dagster_home),
            "QRL_HOME": str(qrl_home),
            "QRL_WAREHOUSE_URL": warehouse_url,
            "QRL_MARKET_SOURCE": "demo",
            "QRL_DEMO_UNIVERSE": "40",
            "MEXC_API_KEY": MEXC_KEY,
            "MEXC_API_SECRET": MEXC_SECRET,
            "QRL_ALERT_CHANNELS": "log,slack,email,sms",
            "QRL_SLACK_WEBHOOK_URL": named["QRL_SLACK_WEBHOOK_URL"],
            "QRL_SMS_WEBHOOK_URL": named["QRL_SMS_WEBHOOK_URL"],
            "QRL_SMS_TOKEN": SMS_TOKEN,
            "QRL_SMS_TO": "+886900000000",
            "QRL_SMS_MIN_LEVEL": "ERROR",
            "QRL_EMAIL_MIN_LEVEL": "ERROR",
            "QRL_SMTP_HOST": "127.0.0.1",
            "QRL_SMTP_PORT": str(smtp.port),
            "QRL_SMTP_USER": SMTP_USER,
            "QRL_SMTP_PASSWORD": SMTP_PASSWORD,
            "QRL_SMTP_STARTTLS": "false",
            "QRL_ALERT_EMAIL_FROM": SMTP_USER,
            "QRL_ALERT_EMAIL_TO": "desk@desk.example",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        instance = dg.DagsterInstance.get()

        # 1. The daily chain on the demo market (the README's `qrl demo`, one chain day).
        assert cli.main(["demo", "--days", "1", "--end", DEMO_END]) == 0

        # 2. The QRL quarter hour in live mode, execution on, with INFO logs kept, through a 5xx
        #    and a 700003 (error texts are where credentials tend to slip in).
        monkeypatch.setenv("QRL_MEXC_MODE", "live")
        monkeypatch.setenv("QRL_MEXC_BASE_URL", mexc.url)
        monkeypatch.setenv("QRL_EXECUTE_ORDERS", "true")
        mexc.inject("/api/v3/account", "500")
        mexc.inject(
            "/api/v3/myTrades", "code", code=700003, msg="Timestamp for this request is outside of the recvWindow."
        )
        quarter = just_finished_quarter_hour(dt.datetime.now(dt.UTC))
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("qrl_position"), dg.AssetKey("rebalance_plan")],
            partition_key=quarter,
        )
        assert result.success
        assert len(mexc.placed) == 1, "the live quarter hour should have placed its order"
        assert mexc.calls("/api/v3/time"), "the 700003 should have resynced the clock"

        # 3. Alerts through Slack, SMTP and SMS from inside a run, with a secret in the message text.
        monkeypatch.setenv("QRL_SECRETS_TEST_MESSAGE", f"could not connect to {warehouse_url}")
        alert_run = dg.materialize(
            [alerting_asset], resources={"alerts": configured_resources()["alerts"]}, instance=instance
        )
        assert alert_run.success
        assert slack.requests and sms.requests and smtp.messages, "every channel should have received the alert"
        assert "[REDACTED]" in slack.requests[0].json["text"]

        printed = capfd.readouterr()
        runs = instance.get_runs()
        event_text = "\n".join(dg.serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id))
        leaks: dict[str, list[str]] = {}

        def check(where: str, text: str) -> None:
            found = find(text, named)
            if found:
                leaks[where] = found

        # The scan can see a secret: the fake servers did receive the real ones.
        assert find(str(mexc.requests), named) == ["MEXC_API_KEY"]
        assert "slack webhook token" in find(slack.requests[0].path, named)
        check("event logs (messages and metadata)", event_text)
        check("stdout/stderr of the runs", printed.out + printed.err)
        files = [path for base in (dagster_home, qrl_home) for path in base.rglob("*") if path.is_file()]
        for path in files:
            check(str(path.relative_to(tmp_path)), path.read_bytes().decode("utf-8", errors="replace"))

        # 4. The UI: resource pages, run-config pages and run logs from a webserver on this instance.
        server_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process, base = start_webserver(server_env, tmp_path / "webserver.log")
        try:
            answers = {"resources": graphql(base, RESOURCES_QUERY), "runs": graphql(base, RUNS_QUERY)}
            for run in runs:
                answers[f"logs of run {run.run_id[:8]}"] = graphql(base, RUN_LOGS_QUERY, {"runId": run.run_id})
        finally:
            stop_process(process, timeout=20)
        assert '"configuredValues"' in answers["resources"] and "rebalance_plan" in answers["runs"]
        for where, text in answers.items():
            check(f"GraphQL {where}", text)
        check("webserver log", (tmp_path / "webserver.log").read_text())

    record(
        Figures(
            target="secrets in logs, metadata, storage and UI",
            faults=f"{len(named)} distinctive secrets; {len(runs)} runs (demo chain, live QRL quarter hour with a 5xx "
            "and a 700003, alerts via Slack/SMTP/SMS)",
            runs=len(runs),
            lost=0,
            duplicated=0,
            notes=f"scanned {len(event_text) // 1024} KiB of events, {len(files)} files, "
            f"{sum(len(a) for a in answers.values()) // 1024} KiB of GraphQL answers: "
            f"{sum(len(v) for v in leaks.values())} occurrences",
        )
    )
    assert leaks == {}
