"""What a user gets from `dagster dev`: dagster-webserver, started the way the README says (this
repository's workspace.yaml and local dagster.yaml), loads the code location and its GraphQL API —
the one the UI renders — shows the asset graph, the jobs, and the schedules and sensors with their
default on/off state."""

import urllib.request

import pytest

from qrl_platform_tests.servers import dagster_webserver, local_dagster_home, webserver_graphql
from qrl_platform_tests.test_definitions import ASSET_GROUPS, SHIPPED_JOBS

QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              jobs { name }
              schedules { name scheduleState { status } }
              sensors { name sensorState { status } }
              assetNodes { assetKey { path } groupName dependencyKeys { path } }
            }
          }
        }
      }
    }
  }
}
"""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


@pytest.fixture
def webserver(tmp_path):
    dagster_home = local_dagster_home(tmp_path / "dagster")
    with dagster_webserver(dagster_home, tmp_path / "qrl", tmp_path / "webserver.log") as base:
        yield base


def test_the_ui_loads_the_code_location_with_its_graph_jobs_schedules_and_sensors(webserver):
    assert b"<html" in _get(webserver).lower()  # the UI itself is served
    workspace = webserver_graphql(webserver, QUERY)["workspaceOrError"]
    assert workspace["__typename"] == "Workspace"
    [entry] = workspace["locationEntries"]
    assert entry["name"] == "qrl_platform"
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location.get("message")
    [repository] = location["repositories"]

    nodes = {"/".join(n["assetKey"]["path"]): n for n in repository["assetNodes"]}
    assert set(ASSET_GROUPS) <= set(nodes)
    for name, group in ASSET_GROUPS.items():
        assert nodes[name]["groupName"] == group, name
    upstream = {"/".join(k["path"]) for k in nodes["strategy_signals"]["dependencyKeys"]}
    assert {"technical_indicators", "fundamental_indicators", "chip_indicators"} <= upstream

    jobs = {j["name"] for j in repository["jobs"]}
    assert SHIPPED_JOBS <= jobs
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    assert schedules.pop("qrl_rebalance_daily_schedule") == "STOPPED"  # trading stays opt-in
    # The backtest's books start on the first day the schedule runs: the operator chooses that day.
    assert schedules.pop("evaluation_schedule") == "STOPPED"
    assert schedules and set(schedules.values()) == {"RUNNING"}, schedules
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    assert {"market_data_available_sensor", "m13_consumption_lag_sensor", "run_failure_alert_sensor"} <= set(sensors)
    assert set(sensors.values()) == {"RUNNING"}, sensors
