"""`qrl` on a deployment (QRL_DAGSTER_URL set): what the commands send to the Dagster webserver, and
how they follow it to the end. Everything goes through the webserver's GraphQL API, the one the UI uses:

* one partition, or none: a run, submitted as the UI's "Materialize" submits it (Dagster's GraphQL
  client), so it passes the run queue, its tag limits and the run launcher;
* a range of partitions: a backfill of the job over those partitions, launched by the mutation the UI's
  "Launch backfill" sends (`launchPartitionBackfill`, with the job's partition set, the asset selection,
  the tags and the run config). The deployment's daemon submits its runs (one run per contiguous range:
  the assets' single-run backfill policy), and the backfill shows under the UI's Backfills with them.
  A range launched from `qrl` and one launched from the UI are therefore the same Dagster object, with
  the same runs, tags and results.

With a bearer token set (QRL_DAGSTER_TOKEN), every request carries it, for the authenticating proxy in
front of the webserver.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import dagster as dg

from qrl_platform.settings import settings

# How often a submitted run's or backfill's status is asked for while following it.
POLL_SECONDS = 2.0
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
# A backfill's statuses once the daemon is done with it (Dagster's BulkActionStatus).
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}
# A backfill with no run after this long is waiting for a daemon: say so once (it keeps waiting).
NO_DAEMON_HINT_SECONDS = 120.0
MAX_TITLE = 100  # Dagster refuses a longer backfill title


def _url() -> str:
    return settings().dagster_url.rstrip("/")


def _headers() -> dict[str, str]:
    token = settings().dagster_token.get_secret_value()
    return {"Authorization": f"Bearer {token}"} if token else {}


def graphql_client():
    """Dagster's GraphQL client for QRL_DAGSTER_URL (scheme, host, port and path prefix taken from it)."""
    from dagster_graphql import DagsterGraphQLClient

    url = urlsplit(settings().dagster_url)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise SystemExit(f"QRL_DAGSTER_URL must be an http(s) URL of the Dagster webserver, got {url.geturl()!r}")
    return DagsterGraphQLClient(
        url.hostname,
        port_number=url.port,
        use_https=url.scheme == "https",
        path_prefix=url.path.rstrip("/"),
        headers=_headers() or None,
        timeout=60,
    )


def graphql(query: str, variables: dict | None = None) -> dict:
    """A query or mutation the client has no method for (backfills, a run's tags and config, its failures)."""
    import httpx

    response = httpx.post(
        _url() + "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=_headers(),
        timeout=60,
    )
    if response.is_error:
        raise RuntimeError(f"{_url()}/graphql answered HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    if body.get("errors"):
        raise SystemExit(f"{_url()}: GraphQL error: {body['errors'][0].get('message')}")
    return body["data"]


RUN_QUERY = """
query QrlRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId jobName status runConfigYaml
      tags { key value }
      assetSelection { path }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""

FAILURES_QUERY = """
query QrlRunFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""

# The job's partition set and the repository it lives in, as the UI's backfill dialog names them.
PARTITION_SETS_QUERY = """
query QrlPartitionSets {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } partitionSets { name pipelineName } }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH_BACKFILL = """
mutation QrlLaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_QUERY = """
query QrlBackfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status error { message } runs { runId status } }
    ... on Error { message }
  }
}
"""


def submit_run(job_name: str, run_config: dict, tags: dict, assets: list[str] | None, label: str):
    """Submit one run and follow it: (run id, succeeded)."""
    client = graphql_client()
    started = time.perf_counter()
    run_id = client.submit_job_execution(
        job_name,
        run_config=run_config,
        tags=tags,
        asset_selection=[dg.AssetKey.from_user_string(name) for name in assets] if assets else None,
    )
    print(f"{label}: submitted run {run_id} to {settings().dagster_url}", flush=True)
    status, shown = client.get_run_status(run_id), None
    while status not in TERMINAL:
        if status != shown:
            print(f"  run {run_id}: {status.value}", flush=True)
            shown = status
        time.sleep(POLL_SECONDS)
        status = client.get_run_status(run_id)
    success = status == dg.DagsterRunStatus.SUCCESS
    print(f"{label}: {'ok' if success else status.value} in {time.perf_counter() - started:.1f}s (run {run_id})")
    if not success:
        _print_failures(run_id)
    return run_id, success


def _partition_set(job_name: str) -> dict:
    """The repository selector and partition set name of `job_name` on the deployment."""
    found = graphql(PARTITION_SETS_QUERY)["repositoriesOrError"]
    if found["__typename"] != "RepositoryConnection":
        raise SystemExit(f"{_url()}: cannot list the code locations: {found.get('message')}")
    for repository in found["nodes"]:
        for partition_set in repository["partitionSets"]:
            if partition_set["pipelineName"] == job_name:
                return {
                    "partitionSetName": partition_set["name"],
                    "repositorySelector": {
                        "repositoryLocationName": repository["location"]["name"],
                        "repositoryName": repository["name"],
                    },
                }
    raise SystemExit(f"{_url()}: no partitioned job {job_name} on the deployment — is its code location loaded?")


def backfill_title(label: str, job_name: str, partition_keys: list[str]) -> str:
    """The backfill's title in the UI: the command's label, or when that is longer than the 100
    characters Dagster allows (a long asset selection), the job and the range; the description keeps
    the label in full."""
    title = f"qrl {label}"
    return title if len(title) <= MAX_TITLE else f"qrl {job_name} {partition_keys[0]}..{partition_keys[-1]}"


def launch_backfill(
    job_name: str,
    partition_keys: list[str],
    run_config: dict,
    tags: dict,
    assets: list[str] | None,
    label: str,
):
    """Launch a backfill of `job_name` (its `assets` when given) over `partition_keys`, as the UI does,
    and follow it until the daemon is done with it: (backfill id, succeeded). It succeeded when Dagster
    says so and every run it launched succeeded."""
    params = {
        "selector": _partition_set(job_name),
        "partitionNames": partition_keys,
        "tags": [{"key": key, "value": value} for key, value in tags.items()],
        "runConfigData": run_config,
        "title": backfill_title(label, job_name, partition_keys),
        "description": f"qrl {label}",
    }
    if assets:
        params["assetSelection"] = [{"path": dg.AssetKey.from_user_string(name).path} for name in assets]
    launched = graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"{label}: the deployment refused the backfill: {launched.get('message')}")
    backfill_id = launched["backfillId"]
    print(f"{label}: launched backfill {backfill_id} on {settings().dagster_url}", flush=True)
    started, shown, hinted = time.perf_counter(), {}, False
    while True:
        backfill = graphql(BACKFILL_QUERY, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if backfill["__typename"] != "PartitionBackfill":
            raise SystemExit(f"{label}: backfill {backfill_id}: {backfill.get('message')}")
        runs = {run["runId"]: run["status"] for run in backfill["runs"]}
        for run_id, status in runs.items():
            if shown.get(run_id) != status:
                print(f"  run {run_id}: {status}", flush=True)
        shown = runs
        if backfill["status"] in BACKFILL_DONE and all(dg.DagsterRunStatus(s) in TERMINAL for s in runs.values()):
            break
        if not runs and not hinted and time.perf_counter() - started > NO_DAEMON_HINT_SECONDS:
            print("  no run yet: the deployment's dagster-daemon submits a backfill's runs — is it running?")
            hinted = True
        time.sleep(POLL_SECONDS)
    success = backfill["status"] in BACKFILL_SUCCEEDED and bool(runs) and set(runs.values()) == {"SUCCESS"}
    outcome = "ok" if success else backfill["status"]
    print(
        f"{label}: {outcome} in {time.perf_counter() - started:.1f}s "
        f"(backfill {backfill_id}, run{'s' if len(runs) != 1 else ''} {', '.join(runs) or 'none'})"
    )
    if backfill.get("error"):
        print(f"  backfill {backfill_id} failed: {backfill['error']['message'].strip()}")
    for run_id, status in runs.items():
        if status != "SUCCESS":
            _print_failures(run_id)
    return backfill_id, success


def _print_failures(run_id: str) -> None:
    events = graphql(FAILURES_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
    for event in events:
        if event["__typename"] == "ExecutionStepFailureEvent":
            print(f"  step {event['stepKey']} failed: {(event.get('error') or {}).get('message', '').strip()}")


def past_run(run_id: str) -> dict | None:
    """A run of the deployment: its id, job, status, tags, run config and asset selection (None: not found)."""
    import yaml

    found = graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
    if found["__typename"] != "Run":
        return None
    selection = found.get("assetSelection")
    return {
        "run_id": found["runId"],
        "job_name": found["jobName"],
        "status": dg.DagsterRunStatus(found["status"]),
        "tags": {t["key"]: t["value"] for t in found["tags"]},
        "run_config": yaml.safe_load(found["runConfigYaml"] or "") or {},
        "assets": ["/".join(k["path"]) for k in selection] if selection else None,
    }
