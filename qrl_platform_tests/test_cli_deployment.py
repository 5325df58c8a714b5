"""With QRL_DAGSTER_URL set, `qrl` submits its runs to that webserver (through an authenticating proxy
that wants the bearer token) and follows them: they land in the webserver's instance, with the job,
partition and tags the command implies, and the exit code follows the run's final status."""

import datetime as dt
import http.server
import threading
import urllib.error
import urllib.request

import dagster as dg
import pytest

from qrl_platform import cli
from qrl_platform_tests.servers import dagster_webserver, free_port

TOKEN = "s3cret-token"
DAY = "2024-11-01"
# DefaultRunCoordinator launches at once, so no daemon is needed to dequeue (Dagster's default is the queue).
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


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(INSTANCE.replace(".qrl/dagster_storage", str(dagster_home / "storage")))
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")  # the webserver (and its runs) inherit it
    monkeypatch.delenv("QRL_DAGSTER_URL", raising=False)
    with dagster_webserver(dagster_home, tmp_path / "qrl", tmp_path / "webserver.log") as base:
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
            monkeypatch.setattr(cli, "POLL_SECONDS", 0.5)
            yield dg.DagsterInstance.from_config(str(dagster_home)), dg.DagsterInstance.from_config(str(local))
        finally:
            proxy.shutdown()
            proxy.server_close()


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

    # A range of an asset selection: one run with the range tags.
    assert cli.main(["market", "2024-10-28", "2024-10-29"]) == 1  # fresh home: indicators lack their lookback
    ranged = remote.get_runs(limit=1)[0]
    assert ranged.job_name == "daily_market_job"
    assert (ranged.tags[cli.RANGE_START], ranged.tags[cli.RANGE_END]) == ("2024-10-28", "2024-10-29")
    assert set(remote.get_materialized_partitions(dg.AssetKey("daily_quotes"))) == {"2024-10-28", "2024-10-29"}

    # What is stored is the deployment's answer (its event log, through the webserver), not the empty
    # local instance's: the backfill plan lacks only the lookback, and status shows the day's rows.
    _, missing = cli.backfill_plan(dt.date(2024, 10, 28), dt.date(2024, 10, 29))
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
