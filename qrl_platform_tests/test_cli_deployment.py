"""With QRL_DAGSTER_URL set, `qrl` submits its runs to that webserver (through an authenticating proxy
that wants the bearer token) and follows them: they land in the webserver's instance, with the job,
partition and tags the command implies, and the exit code follows the run's final status. A range of
partitions is a backfill, launched as the UI launches one and run by the deployment's daemon."""

import datetime as dt
import http.server
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import dagster as dg
import pytest

from qrl_platform import cli, cli_deployment
from qrl_platform_tests.servers import REPO_ROOT, dagster_webserver, free_port, stop_process, webserver_graphql

TOKEN = "s3cret-token"
DAY = "2024-11-01"
# DefaultRunCoordinator launches at once, so the daemon is not needed to dequeue (Dagster's default is
# the queue); it is there to submit the runs of backfills.
INSTANCE = """
storage:
  sqlite:
    base_dir: .qrl/dagster_storage
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Serves the webserver under /dagster and only to `Authorization: Bearer TOKEN` (like production's)."""

    upstream = ""
    seen: list[str] = []

    def _forward(self):
        self.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}" or not self.path.startswith("/dagster/"):
            self.send_response(401)
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in {"content-type", "accept"}}
        request = urllib.request.Request(self.upstream + self.path[len("/dagster") :], data=body, headers=headers)
        request.method = self.command
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, payload, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _forward

    def log_message(self, *args):
        pass


INSTIGATORS_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { id sensorState { status } } schedules { id scheduleState { status } } } } } }
"""


def _stop_automation(base: str) -> None:
    """Stop every schedule and sensor (as an operator would in the UI), so that the daemon launches the
    backfills' runs and nothing of its own: the test counts the runs."""
    for repository in webserver_graphql(base, INSTIGATORS_QUERY)["repositoriesOrError"]["nodes"]:
        for sensor in repository["sensors"]:
            if sensor["sensorState"]["status"] == "RUNNING":
                webserver_graphql(
                    base, "mutation($id: String) { stopSensor(id: $id) { __typename } }", {"id": sensor["id"]}
                )
        for schedule in repository["schedules"]:
            if schedule["scheduleState"]["status"] == "RUNNING":
                mutation = "mutation($id: String) { stopRunningSchedule(id: $id) { __typename } }"
                webserver_graphql(base, mutation, {"id": schedule["id"]})
    for repository in webserver_graphql(base, INSTIGATORS_QUERY)["repositoriesOrError"]["nodes"]:
        states = [i["sensorState"]["status"] for i in repository["sensors"]]
        states += [i["scheduleState"]["status"] for i in repository["schedules"]]
        assert set(states) <= {"STOPPED"}, states


def _start_daemon(dagster_home, qrl_home, log_path) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "QRL_HOME": str(qrl_home)}
    env.pop("QRL_WAREHOUSE_URL", None)
    daemon = os.path.join(os.path.dirname(sys.executable), "dagster-daemon")
    with log_path.open("w") as log:
        return subprocess.Popen(
            [daemon, "run", "-w", "workspace.yaml"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(INSTANCE.replace(".qrl/dagster_storage", str(dagster_home / "storage")))
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")  # the webserver (and its runs) inherit it
    monkeypatch.delenv("QRL_DAGSTER_URL", raising=False)
    with dagster_webserver(dagster_home, tmp_path / "qrl", tmp_path / "webserver.log") as base:
        _stop_automation(base)
        daemon = _start_daemon(dagster_home, tmp_path / "qrl", tmp_path / "daemon.log")
        _Proxy.upstream, _Proxy.seen = base, []
        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Proxy)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            monkeypatch.setenv("QRL_DAGSTER_URL", f"http://127.0.0.1:{proxy.server_port}/dagster")
            monkeypatch.setenv("QRL_DAGSTER_TOKEN", TOKEN)
            # The CLI's own environment: another (empty) local instance, which must stay untouched.
            local = tmp_path / "local_dagster"
            local.mkdir()
            (local / "dagster.yaml").write_text(INSTANCE.replace(".qrl/dagster_storage", str(local / "storage")))
            monkeypatch.setenv("DAGSTER_HOME", str(local))
            monkeypatch.setenv("QRL_HOME", str(tmp_path / "qrl"))
            monkeypatch.setattr(cli_deployment, "POLL_SECONDS", 0.5)
            yield dg.DagsterInstance.from_config(str(dagster_home)), dg.DagsterInstance.from_config(str(local))
        finally:
            proxy.shutdown()
            proxy.server_close()
            stop_process(daemon, timeout=30)


def test_commands_run_on_the_deployment_and_exit_with_its_status(deployment, capsys):
    remote, local = deployment

    assert cli.main(["notify", DAY]) == 0
    [run] = remote.get_runs()
    assert run.job_name == "notify_m13_job" and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == DAY and run.tags["qrl/manual"] == "notify"
    assert run.tags["qrl/estimate_seconds"] == "30"  # the job's own tags: the deployment's definition ran
    assert run.run_config == {"ops": {"m13_notification": {"config": {"force": False}}}}
    out = capsys.readouterr().out
    assert f"notify_m13_job {DAY}: submitted run {run.run_id}" in out
    assert f"notify_m13_job {DAY}: ok in " in out and f"(run {run.run_id})" in out

    # No indicators on the deployment's fresh home: the strategies refuse, the run fails, the CLI says so.
    assert cli.main(["run-all", DAY]) == 1
    failed = remote.get_runs(limit=1)[0]
    assert failed.job_name == "strategies_job" and failed.status == dg.DagsterRunStatus.FAILURE
    out = capsys.readouterr().out
    assert f"strategies_job {DAY}: FAILURE" in out and "step strategy_signals failed" in out
    # Missing indicators are not retried by the job's step retry policy (only materialising them helps).
    assert not remote.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)

    # retry reads the failed run from the deployment and submits the same job, partition and config there.
    assert cli.main(["retry", failed.run_id]) == 1
    retried = remote.get_runs(limit=1)[0]
    assert retried.tags["qrl/retry_of"] == failed.run_id and retried.tags["dagster/partition"] == DAY
    assert retried.job_name == "strategies_job" and retried.run_config == failed.run_config

    # A range: a backfill of the job over those days, launched as the UI launches one; the daemon
    # submits its one run (single-run backfill policy) with the range tags, the job's and the command's.
    assert cli.main(["market", "2024-10-28", "2024-10-29"]) == 1  # fresh home: indicators lack their lookback
    out = capsys.readouterr().out
    ranged = remote.get_runs(limit=1)[0]
    backfill_id = ranged.tags["dagster/backfill"]
    assert f"daily_market_job 2024-10-28..2024-10-29: launched backfill {backfill_id}" in out
    assert "daily_market_job 2024-10-28..2024-10-29: COMPLETED_FAILED in " in out
    assert f"(backfill {backfill_id}, run {ranged.run_id})" in out and "step chip_indicators failed: " in out
    assert ranged.job_name == "daily_market_job" and ranged.status == dg.DagsterRunStatus.FAILURE
    assert (ranged.tags[cli.RANGE_START], ranged.tags[cli.RANGE_END]) == ("2024-10-28", "2024-10-29")
    assert ranged.tags["qrl/manual"] == "market" and ranged.tags["qrl/estimate_seconds"] == "180"
    assert set(remote.get_materialized_partitions(dg.AssetKey("daily_quotes"))) == {"2024-10-28", "2024-10-29"}

    # What is stored is the deployment's answer (its event log, through the webserver), not the empty
    # local instance's: the backfill plan lacks only the lookback, and status shows the day's rows.
    missing = cli.backfill_plan(dt.date(2024, 10, 28), dt.date(2024, 10, 29)).missing
    [quotes] = [m for m in missing if m.startswith("daily_quotes:")]
    assert quotes.endswith("…2024-10-25)")
    capsys.readouterr()
    assert cli.main(["status", "2024-10-29"]) == 0
    status = capsys.readouterr()
    assert "  daily_quotes            60 rows" in status.out.splitlines()
    assert "stored partitions from QRL_DAGSTER_URL" in status.err

    assert len(remote.get_runs()) == 4
    assert local.get_runs() == []  # nothing ran in-process
    assert _Proxy.seen and set(_Proxy.seen) == {f"Bearer {TOKEN}"}  # every request carried the token


def test_a_wrong_token_is_refused_by_the_proxy(deployment, monkeypatch):
    monkeypatch.setenv("QRL_DAGSTER_TOKEN", "wrong")
    with pytest.raises(Exception, match="401"):
        cli.main(["notify", DAY])
    remote, _ = deployment
    assert remote.get_runs() == []


def test_a_backfill_title_fits_dagsters_limit():
    keys = ["2023-09-27", "2024-10-25"]
    short = "daily_market_job 2024-10-28..2024-10-29"
    assert cli_deployment.backfill_title(short, "daily_market_job", keys) == f"qrl {short}"
    long_label = (
        "daily_quotes, institutional_flows, margin_balances, valuations, corporate_actions 2023-09-27..2024-10-25"
    )
    title = cli_deployment.backfill_title(long_label, "trading_day_assets_job", keys)
    assert title == "qrl trading_day_assets_job 2023-09-27..2024-10-25" and len(title) <= 100


def test_a_backfill_with_no_run_for_a_while_names_the_daemon_once_and_keeps_following(monkeypatch, capsys):
    """The deployment's daemon submits a backfill's runs; while none has appeared after
    NO_DAEMON_HINT_SECONDS the CLI says once that the daemon may be down, and goes on following the
    backfill until it is done. The deployment's answers are scripted: only the fields the CLI reads,
    named as Dagster's GraphQL schema names them (the first test in this file sends the same queries
    to a real webserver)."""
    polls = {"count": 0}

    def answers(query: str, variables: dict | None = None) -> dict:
        if query == cli_deployment.PARTITION_SETS_QUERY:
            partition_set = {"name": "strategies_job_partition_set", "pipelineName": "strategies_job"}
            repository = {"name": "__repository__", "location": {"name": "qrl"}, "partitionSets": [partition_set]}
            return {"repositoriesOrError": {"__typename": "RepositoryConnection", "nodes": [repository]}}
        if query == cli_deployment.LAUNCH_BACKFILL:
            return {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": "bf1"}}
        assert query == cli_deployment.BACKFILL_QUERY and variables == {"backfillId": "bf1"}
        polls["count"] += 1
        if polls["count"] <= 3:  # the daemon has not picked it up yet
            return {"partitionBackfillOrError": {"__typename": "PartitionBackfill", "status": "REQUESTED", "runs": []}}
        run = {"runId": "run-1", "status": "SUCCESS"}
        return {"partitionBackfillOrError": {"__typename": "PartitionBackfill", "status": "COMPLETED", "runs": [run]}}

    monkeypatch.setattr(cli_deployment, "graphql", answers)
    monkeypatch.setattr(cli_deployment, "NO_DAEMON_HINT_SECONDS", 0.0)
    monkeypatch.setattr(cli_deployment, "POLL_SECONDS", 0.0)
    monkeypatch.setenv("QRL_DAGSTER_URL", "http://127.0.0.1:1/dagster")
    backfill_id, success = cli_deployment.launch_backfill(
        "strategies_job", ["2024-11-01", "2024-11-04"], {}, {}, None, "strategies 2024-11-01..2024-11-04"
    )
    out = capsys.readouterr().out
    assert (backfill_id, success) == ("bf1", True) and polls["count"] == 4
    assert out.count("no run yet: the deployment's dagster-daemon submits a backfill's runs — is it running?") == 1
    assert "  run run-1: SUCCESS" in out and "strategies 2024-11-01..2024-11-04: ok in" in out
