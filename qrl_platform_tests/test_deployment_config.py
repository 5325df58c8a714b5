"""The production deployment checked without a cluster or Docker.

The Dockerfile, the Helm values and deploy/dagster.yaml are configuration that otherwise meets a
validator for the first time when the cluster runs it. Here every piece goes through the same
code that will consume it: Dagster's instance schema, each configurable class's own schema, the real
K8sRunLauncher (built against a dummy kubeconfig) rendering a run-worker Job, Dagster's tag-limit
counter, a DagsterInstance on a real PostgreSQL through psycopg2, the dagster CLI's argument parser,
and a code server started with the image's CMD. The Helm chart itself is not available offline, so
its values are translated the way the chart's templates do it and checked against the same schemas.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from qrl_platform_tests.servers import stop_process

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTANCE_YAML = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

DEFINITIONS_MODULE = "qrl_platform.definitions"
USER_DEPLOYMENT = "qrl-platform"
CODE_SERVER_PORT = 3030
RELEASE_NAMESPACE = "dagster"  # the namespace deploy/README.md installs the chart into
SECRETS = ["qrl-datastores", "qrl-mexc", "qrl-alerts"]
RUN_POD_RESOURCES = {"cpu": "2", "memory": "4Gi"}
TEST_IMAGE = "registry.example.com/qrl/qrl-platform:test"

# What the instance's `env:` references resolve to when no real server is involved.
DUMMY_PG_ENV = {
    "DAGSTER_PG_HOST": "pg.example.invalid",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
}

# ---------------------------------------------------------------------------------------------------
# Field names of the dagster/dagster chart, from its pydantic schema in the dagster repository
# (helm/dagster/schema/schema/charts/...). Only the sections this repository sets are listed; a key
# outside these sets is a typo the chart would reject or silently ignore.
# ---------------------------------------------------------------------------------------------------
CHART_TOP_LEVEL = {
    "global", "dagsterWebserver", "dagster-user-deployments", "postgresql",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis", "flower",
    "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher", "pythonLogs",
    "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount", "retention", "concurrency",
    "additionalInstanceConfig", "nameOverride", "fullnameOverride", "rbacEnabled",
}  # fmt: skip
CHART_GLOBAL = {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"}
CHART_WEBSERVER = {
    "replicaCount", "image", "nameOverride", "pathPrefix", "service", "workspace", "env",
    "envConfigMaps", "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity",
    "tolerations", "podSecurityContext", "securityContext", "resources", "readinessProbe",
    "livenessProbe", "startupProbe", "annotations", "enableReadOnly", "dbStatementTimeout",
    "dbPoolRecycle", "logLevel", "schedulerName", "volumeMounts", "volumes",
}  # fmt: skip
CHART_USER_DEPLOYMENTS = {"enabled", "enableSubchart", "imagePullSecrets", "deployments"}
CHART_USER_DEPLOYMENT = {
    "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
    "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
    "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName",
}  # fmt: skip
CHART_K8S_RUN_LAUNCHER = {
    "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
    "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
    "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
}  # fmt: skip
CHART_RUN_K8S_CONFIG = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}
CHART_POSTGRESQL = {
    "postgresqlScheme", "image", "enabled", "postgresqlHost", "postgresqlUsername",
    "postgresqlPassword", "postgresqlDatabase", "postgresqlParams", "service",
}  # fmt: skip
CHART_DAEMON = {
    "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps", "envSecrets",
    "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "checkDbReadyInitContainer", "livenessProbe", "readinessProbe",
    "startupProbe", "annotations", "runMonitoring", "runRetries", "sensors", "schedules", "backfills",
    "schedulerName", "logFormat", "volumeMounts", "volumes",
}  # fmt: skip
CHART_QUEUED_RUN_COORDINATOR = {
    "maxConcurrentRuns": "max_concurrent_runs",
    "tagConcurrencyLimits": "tag_concurrency_limits",
    "dequeueIntervalSeconds": "dequeue_interval_seconds",
    "dequeueUseThreads": "dequeue_use_threads",
    "dequeueNumWorkers": "dequeue_num_workers",
}
# The chart's top-level `concurrency:` (templates/helpers/instance/_concurrency.tpl).
CHART_CONCURRENCY_POOLS = {
    "defaultLimit": "default_limit",
    "granularity": "granularity",
    "opGranularityRunBuffer": "op_granularity_run_buffer",
}
CHART_CONCURRENCY_RUNS = {"maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits"}
CHART_RUN_MONITORING = {
    "enabled": "enabled",
    "startTimeoutSeconds": "start_timeout_seconds",
    "cancelTimeoutSeconds": "cancel_timeout_seconds",
    "maxRuntimeSeconds": "max_runtime_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "pollIntervalSeconds": "poll_interval_seconds",
}
CHART_RUN_RETRIES = {
    "enabled": "enabled",
    "maxRetries": "max_retries",
    "retryOnAssetOrOpFailure": "retry_on_asset_or_op_failure",
}
CHART_THREADS = {"useThreads": "use_threads", "numWorkers": "num_workers", "numSubmitWorkers": "num_submit_workers"}
CHART_RETENTION = {"enabled", "sensor", "schedule", "autoMaterialize"}
CHART_COMPUTE_LOG_MANAGERS = {
    "NoOpComputeLogManager", "AzureBlobComputeLogManager", "GCSComputeLogManager",
    "S3ComputeLogManager", "CustomComputeLogManager",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _configurable_class(section: dict[str, Any]) -> type:
    """The class a `module`/`class` section names, resolved the way the instance resolves it."""
    from dagster._serdes.config_class import ConfigurableClassData

    data = ConfigurableClassData(section["module"], section["class"], "{}")
    return getattr(importlib.import_module(data.module_name), data.class_name)


def _process(schema: Any, value: Any) -> dict[str, Any]:
    """Validate *and* resolve (env vars, defaults) config against a schema, as the instance does."""
    from dagster._config import process_config, resolve_to_config_type

    result = process_config(resolve_to_config_type(schema), value)
    assert result.success, [error.message for error in result.errors or []]
    return dict(result.value)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def _exec_form(arguments: str) -> list[str]:
    """The JSON array of a CMD/HEALTHCHECK CMD; shell form is refused (no signal forwarding)."""
    assert arguments.startswith("["), f"expected exec (JSON) form, got {arguments!r}"
    return json.loads(arguments)


def _dockerfile_cmd() -> list[str]:
    cmds = [args for name, args in _dockerfile_instructions() if name == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    return _exec_form(cmds[-1])


def _dagster_cli_params(argv: list[str]) -> dict[str, Any]:
    """Parse a `dagster …` command line with dagster's own click commands, without running it."""
    from dagster._cli import create_dagster_cli

    assert argv[0] == "dagster", argv
    command: click.Command = create_dagster_cli()
    args = list(argv[1:])
    while isinstance(command, click.Group):
        name, args = args[0], args[1:]
        sub = command.get_command(click.Context(command), name)
        assert sub is not None, f"`dagster` has no command {name!r} in {argv}"
        command = sub
    return command.make_context(command.name, args).params


def _chart_code_server_argv(deployment: dict[str, Any]) -> list[str]:
    """What dagster-user-deployments' deployment-user.yaml runs for this deployment."""
    if deployment.get("dagsterApiGrpcArgs"):
        head = ["dagster", "api", "grpc"]
        extra = deployment["dagsterApiGrpcArgs"]
    else:
        head = ["dagster", "code-server", "start"]
        extra = deployment["codeServerArgs"]
    return [*head, "-h", "0.0.0.0", "-p", str(deployment["port"]), *extra]


def _user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    deployments = values["dagster-user-deployments"]["deployments"]
    matching = [d for d in deployments if d["name"] == USER_DEPLOYMENT]
    assert len(matching) == 1, [d["name"] for d in deployments]
    return matching[0]


def _chart_run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    """runLauncher.config.k8sRunLauncher as the chart's dagsterYaml.runLauncher.k8s template renders it
    (helm/dagster/templates/helpers/instance/_run-launcher.tpl), for a release named `dagster`."""
    chart = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": chart["loadInclusterConfig"],
        "job_namespace": chart.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": chart["imagePullPolicy"],
        "service_account_name": "dagster",  # include "dagster.serviceAccountName"
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": "dagster-instance",  # "{{ fullname }}-instance"
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if chart.get("kubeconfigFile"):
        config["kubeconfig_file"] = chart["kubeconfigFile"]
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    if chart.get("envConfigMaps"):
        config["env_config_maps"] = [c["name"] for c in chart["envConfigMaps"] if "name" in c]
    if chart.get("envSecrets"):
        config["env_secrets"] = [s["name"] for s in chart["envSecrets"] if "name" in s]
    simple = {
        "envVars": "env_vars", "volumeMounts": "volume_mounts", "volumes": "volumes", "labels": "labels",
        "resources": "resources", "schedulerName": "scheduler_name", "securityContext": "security_context",
    }  # fmt: skip
    for chart_key, dagster_key in simple.items():
        if chart.get(chart_key):
            config[dagster_key] = chart[chart_key]
    if chart.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if chart.get("runK8sConfig"):
        config["run_k8s_config"] = {
            CHART_RUN_K8S_CONFIG[key]: value for key, value in chart["runK8sConfig"].items() if value
        }
    return config


def _chart_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml the chart's configmap-instance.yaml renders from these values (the parts this
    repository sets). Hand-translated from the chart's templates: helm is not available offline."""
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams") or {},
    }
    if pg.get("postgresqlScheme"):
        postgres_db["scheme"] = pg["postgresqlScheme"]
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": {"postgres_db": postgres_db},
        },
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": {"postgres_db": postgres_db},
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": {"postgres_db": postgres_db},
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": _chart_run_launcher(values)},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {CHART_QUEUED_RUN_COORDINATOR[k]: v for k, v in queued.items() if v is not None},
        },
        "compute_logs": {
            "module": "dagster._core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
        "run_monitoring": {CHART_RUN_MONITORING[k]: v for k, v in daemon["runMonitoring"].items()},
        "run_retries": {CHART_RUN_RETRIES[k]: v for k, v in daemon["runRetries"].items()},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    concurrency = values.get("concurrency") or {}
    rendered: dict[str, Any] = {}
    for section, names in (("pools", CHART_CONCURRENCY_POOLS), ("runs", CHART_CONCURRENCY_RUNS)):
        if concurrency.get(section):
            rendered[section] = {names[k]: v for k, v in concurrency[section].items() if v is not None}
    if rendered:
        instance["concurrency"] = rendered
    for kind in ("sensors", "schedules"):
        if daemon.get(kind, {}).get("useThreads"):
            instance[kind] = {CHART_THREADS[k]: v for k, v in daemon[kind].items()}
    retention = values.get("retention", {})
    if retention.get("enabled"):
        instance["retention"] = {
            kind: {"purge_after_days": retention[kind]["purgeAfterDays"]}
            for kind in ("schedule", "sensor")
            if retention.get(kind)
        }
    return instance


def _dagster_instance_config(tmp_path: Path, instance: dict[str, Any]) -> dict[str, Any]:
    """Validate a whole instance dict through the same entry point DagsterInstance uses."""
    from dagster._core.instance.config import dagster_instance_config

    home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
    config, custom_class = dagster_instance_config(str(home))
    assert custom_class is None
    return dict(config)


def _render_run_worker_job(launcher_config: dict[str, Any], kubeconfig: str, tags: dict[str, str] | None = None):
    """Build the real K8sRunLauncher from its config and render the Job it would create for a run.

    Everything except the API call of launch_run: container context for the run (launcher config +
    run tags), job config, construct_dagster_k8s_job. The kubeconfig is a dummy; nothing connects."""
    import kubernetes
    from dagster import DagsterRun
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job

    processed = _process(K8sRunLauncher.config_type(), launcher_config)
    launcher = K8sRunLauncher(**{**processed, "load_incluster_config": False, "kubeconfig_file": kubeconfig})
    run = DagsterRun(job_name="daily_chain", run_id=str(uuid.uuid4()), tags=tags or {})
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=TEST_IMAGE, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name=f"dagster-run-{run.run_id[:8]}",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    return context.namespace, kubernetes.client.ApiClient().sanitize_for_serialization(job)


def _run_container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env_from(container: dict[str, Any], kind: str) -> list[str]:
    return [source[kind]["name"] for source in container.get("envFrom", []) if kind in source]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, in Docker's semantics: patterns are relative to the
    context root, `*`/`?` stay within one path segment, `**` spans segments, and a pattern that
    matches a directory excludes everything below it. Later lines win."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negated, re.compile(rf"^{regex}(?:/.*)?$")))
    return patterns


def _in_build_context(relative: str) -> bool:
    included = True
    for negated, regex in _dockerignore_patterns():
        if regex.match(relative):
            included = negated
    return included


# ---------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def dummy_pg_env(monkeypatch):
    for name, value in DUMMY_PG_ENV.items():
        monkeypatch.setenv(name, value)
    return DUMMY_PG_ENV


@pytest.fixture
def offline_kubeconfig(tmp_path):
    """A syntactically valid kubeconfig pointing nowhere; restores the kubernetes client's global
    default configuration afterwards (load_kube_config replaces it)."""
    import kubernetes

    previous = kubernetes.client.Configuration.get_default_copy()
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "offline", "user": {"token": "offline"}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
                "current-context": "offline",
            }
        )
    )
    yield str(path)
    kubernetes.client.Configuration.set_default(previous)


# ---------------------------------------------------------------------------------------------------
# (1) deploy/dagster.yaml against Dagster's schemas
# ---------------------------------------------------------------------------------------------------


def test_production_instance_validates_against_dagsters_instance_schema(tmp_path, dummy_pg_env):
    config = _dagster_instance_config(tmp_path, _yaml(INSTANCE_YAML))
    assert set(config["storage"]) == {"postgres"}
    assert config["telemetry"] == {"enabled": False}
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["start_timeout_seconds"] > 0
    assert config["run_monitoring"]["cancel_timeout_seconds"] > 0
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["schedules"]["use_threads"] and config["sensors"]["use_threads"]


def test_local_instance_validates_and_monitors_runs(tmp_path):
    """The local dagster.yaml (copied to DAGSTER_HOME by scripts/demo) enforces max runtimes too."""
    config = _dagster_instance_config(tmp_path, _yaml(ROOT / "dagster.yaml"))
    assert config["run_monitoring"] == {
        "enabled": True,
        "start_timeout_seconds": 180,
        "cancel_timeout_seconds": 180,
        "max_runtime_seconds": 7200,
        "max_resume_run_attempts": 0,
        "poll_interval_seconds": 30,
    }
    home = tmp_path / "local_home"
    home.mkdir()
    local = (ROOT / "dagster.yaml").read_text().replace(".qrl/dagster_storage", str(home / "storage"))
    (home / "dagster.yaml").write_text(local)
    import dagster as dg

    from qrl_platform.defs.treasury.jobs import QRL_JOBS

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Dagster's own SQLite storages, under the configured directory.
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert (home / "storage" / "history" / "runs").is_dir()
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["max_runtime_seconds"] == 7200
        assert instance.run_monitoring_settings["poll_interval_seconds"] == 30
    qrl_job = QRL_JOBS[0]
    assert qrl_job.tags["dagster/max_runtime_seconds"] == "600"  # the per-run limit the monitor enforces


def test_postgres_storage_validates_for_every_storage_class_and_names_psycopg2(dummy_pg_env):
    from dagster_postgres import (
        DagsterPostgresStorage,
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    storage = _yaml(INSTANCE_YAML)["storage"]["postgres"]
    for klass in (DagsterPostgresStorage, PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage):
        processed = _process(klass.config_type(), storage)
        url = pg_url_from_config(processed)
        assert url == "postgresql+psycopg2://dagster:not-a-real-password@pg.example.invalid:5432/dagster"
        # SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://; the scheme pins psycopg2.
        assert make_url(url).get_dialect().driver == "psycopg2"


def test_postgres_storage_takes_every_connection_setting_from_the_environment():
    storage = _yaml(INSTANCE_YAML)["storage"]["postgres"]["postgres_db"]
    assert {key: storage[key] for key in ("hostname", "port", "db_name", "username", "password")} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
    }
    assert storage["scheme"] == "postgresql+psycopg2"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("run_coordinator", "dagster._core.run_coordinator.queued_run_coordinator.QueuedRunCoordinator"),
        ("run_launcher", "dagster_k8s.launcher.K8sRunLauncher"),
    ],
)
def test_each_configurable_section_validates_against_its_class(section, expected, dummy_pg_env):
    config = _yaml(INSTANCE_YAML)[section]
    klass = _configurable_class(config)
    assert f"{klass.__module__}.{klass.__qualname__}" == expected
    _process(klass.config_type(), config.get("config", {}))


def test_instance_files_name_only_public_dagster_modules():
    """No `dagster._…` module in either instance file; the scheduler and compute logs are Dagster's
    defaults (the daemon scheduler; local compute logs in the run pod)."""
    for path in (INSTANCE_YAML, ROOT / "dagster.yaml"):
        assert "dagster._" not in path.read_text(), path
        config = _yaml(path)
        modules = [
            section["module"] for section in config.values() if isinstance(section, dict) and "module" in section
        ]
        assert all(module == "dagster" or not module.startswith("dagster.") for module in modules), modules
        assert "scheduler" not in config and "compute_logs" not in config


def test_queued_run_coordinator_is_constructed_from_its_config():
    from dagster._core.instance.config import ConcurrencyConfig
    from dagster._core.run_coordinator import QueuedRunCoordinator

    instance = _yaml(INSTANCE_YAML)
    config = instance["run_coordinator"]["config"]
    coordinator = QueuedRunCoordinator.from_config_value(None, _process(QueuedRunCoordinator.config_type(), config))
    # What DagsterInstance does: `concurrency:` overrides the coordinator's own run queue settings.
    concurrency = ConcurrencyConfig.from_concurrency_settings(
        instance["concurrency"], coordinator.get_run_queue_config()
    )
    queue = concurrency.run_queue_config
    assert queue.max_concurrent_runs == 8
    assert {limit["key"] for limit in queue.tag_concurrency_limits} == {
        "dagster/backfill",
        "qrl/warehouse-writer",
    }
    # Every concurrency pool (one per exchange host group) admits one step at a time.
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.pool_config.pool_granularity.value == "op"


def test_tag_concurrency_limits_admit_and_block_runs_as_documented():
    """The limits exactly as the daemon's dequeuer applies them (Dagster's own counter)."""
    from dagster import DagsterRun
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    config = _yaml(INSTANCE_YAML)["concurrency"]["runs"]
    limits = config["tag_concurrency_limits"]

    def run(**tags: str) -> DagsterRun:
        return DagsterRun(job_name="job", run_id=str(uuid.uuid4()), tags=tags)

    # Backfills never take more than half of the slots: the daily chain always finds one.
    backfill_runs = [run(**{"dagster/backfill": f"bf{i}"}) for i in range(4)]
    counter = TagConcurrencyLimitsCounter(limits, backfill_runs)
    assert counter.is_blocked(run(**{"dagster/backfill": "bf9"}))
    assert not counter.is_blocked(run(**{"dagster/schedule_name": "daily_chain"}))
    assert config["max_concurrent_runs"] > 4

    # One run per warehouse table group; other groups proceed.
    counter = TagConcurrencyLimitsCounter(limits, [run(**{"qrl/warehouse-writer": "strategy_stats"})])
    assert counter.is_blocked(run(**{"qrl/warehouse-writer": "strategy_stats"}))
    assert not counter.is_blocked(run(**{"qrl/warehouse-writer": "strategy_signals"}))

    # Exchanges are pools, not run tags: a run never queues behind another run for its exchange.
    assert not any(limit["key"] == "qrl/exchange" for limit in limits)


def test_k8s_run_launcher_renders_the_run_worker_job(offline_kubeconfig):
    launcher_config = _yaml(INSTANCE_YAML)["run_launcher"]["config"]
    namespace, job = _render_run_worker_job(launcher_config, offline_kubeconfig)
    assert namespace == RELEASE_NAMESPACE
    pod = job["spec"]["template"]
    container = _run_container(job)

    assert container["image"] == TEST_IMAGE  # the launching code location's image
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {"requests": RUN_POD_RESOURCES, "limits": RUN_POD_RESOURCES}
    assert _env_from(container, "secretRef") == SECRETS
    assert _env_from(container, "configMapRef") == ["qrl-platform-env"]
    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

    uid = _dockerfile_user().split(":")[0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert str(pod["spec"]["securityContext"]["runAsUser"]) == uid
    assert pod["spec"]["serviceAccountName"] == "dagster"
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "qrl-platform"


def test_a_job_can_raise_its_run_pod_resources_with_the_dagster_k8s_config_tag(offline_kubeconfig):
    """The escape hatch deploy/README.md documents for heavy jobs (a one-year single-run backfill)."""
    bigger = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}
    tags = {"dagster-k8s/config": json.dumps({"container_config": {"resources": bigger}})}
    launcher_config = _yaml(INSTANCE_YAML)["run_launcher"]["config"]
    _, job = _render_run_worker_job(launcher_config, offline_kubeconfig, tags=tags)
    container = _run_container(job)
    assert container["resources"] == bigger
    assert _env_from(container, "secretRef") == SECRETS  # the rest of the launcher config still applies


# ---------------------------------------------------------------------------------------------------
# (5) a DagsterInstance from deploy/dagster.yaml on a real PostgreSQL, through psycopg2
# ---------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_instance_from_production_yaml_works_on_real_postgres(postgres_url, tmp_path, monkeypatch):
    import dagster as dg
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.scheduler import DagsterDaemonScheduler
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
    from dagster_postgres import PostgresRunStorage
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(server.port))
    monkeypatch.setenv("DAGSTER_PG_DB", server.database)
    monkeypatch.setenv("DAGSTER_PG_USERNAME", server.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "ignored-by-trust-auth")

    config = _yaml(INSTANCE_YAML)
    config["run_launcher"] = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}  # no cluster
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
        assert instance.run_storage._engine.dialect.driver == "psycopg2"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        assert isinstance(instance.compute_log_manager, LocalComputeLogManager)  # Dagster's default
        assert isinstance(instance.scheduler, DagsterDaemonScheduler)  # Dagster's default
        assert instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 8
        # A pool nobody configured by hand gets the default limit of one slot on first use.
        assert instance.event_log_storage.initialize_concurrency_limit_to_default("twse-tpex")
        assert instance.event_log_storage.get_concurrency_info("twse-tpex").slot_count == 1

        assert instance.get_runs() == []
        assert list(instance.get_run_records()) == []

        run = DagsterRun(job_name="deploy_probe", run_id=str(uuid.uuid4()), status=DagsterRunStatus.NOT_STARTED)
        instance.add_run(run)
        (record,) = instance.get_run_records()
        assert record.dagster_run.run_id == run.run_id
        assert record.dagster_run.status == DagsterRunStatus.NOT_STARTED

        instance.report_runless_asset_event(dg.AssetMaterialization("probe", metadata={"from": "deploy"}))
        event = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert event is not None
        assert event.asset_materialization.metadata["from"].value == "deploy"
    finally:
        instance.dispose()


# ---------------------------------------------------------------------------------------------------
# (2) the Helm values
# ---------------------------------------------------------------------------------------------------


def test_helm_values_use_only_chart_fields_and_name_the_code_location():
    values = _yaml(HELM_VALUES)
    assert set(values) <= CHART_TOP_LEVEL, set(values) - CHART_TOP_LEVEL
    assert set(values["global"]) <= CHART_GLOBAL

    webserver = values["dagsterWebserver"]
    assert set(webserver) <= CHART_WEBSERVER, set(webserver) - CHART_WEBSERVER
    assert webserver["enableReadOnly"] is True  # viewers get the --read-only webserver

    user_deployments = values["dagster-user-deployments"]
    assert set(user_deployments) <= CHART_USER_DEPLOYMENTS
    assert user_deployments["enabled"] is True
    deployment = _user_deployment(values)
    assert set(deployment) <= CHART_USER_DEPLOYMENT, set(deployment) - CHART_USER_DEPLOYMENT
    assert deployment["port"] == CODE_SERVER_PORT
    args = deployment.get("codeServerArgs") or deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == DEFINITIONS_MODULE
    assert [s["name"] for s in deployment["envSecrets"]] == SECRETS
    assert deployment["image"]["tag"] not in ("latest", "", None)
    assert str(deployment["podSecurityContext"]["runAsUser"]) == _dockerfile_user().split(":")[0]

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= CHART_K8S_RUN_LAUNCHER, set(launcher) - CHART_K8S_RUN_LAUNCHER
    assert set(launcher["runK8sConfig"]) <= set(CHART_RUN_K8S_CONFIG)

    postgresql = values["postgresql"]
    assert set(postgresql) <= CHART_POSTGRESQL, set(postgresql) - CHART_POSTGRESQL
    assert postgresql["enabled"] is False and postgresql["postgresqlHost"]
    assert postgresql["postgresqlScheme"] == "postgresql+psycopg2"
    assert postgresql["postgresqlPassword"] == ""  # the password lives only in the Secret
    assert values["generatePostgresqlPasswordSecret"] is False

    daemon = values["dagsterDaemon"]
    assert set(daemon) <= CHART_DAEMON, set(daemon) - CHART_DAEMON
    assert daemon["enabled"] is True
    assert daemon["runCoordinator"]["enabled"] is True
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert set(queued) <= set(CHART_QUEUED_RUN_COORDINATOR)
    assert set(daemon["runMonitoring"]) <= set(CHART_RUN_MONITORING)
    assert set(daemon["runRetries"]) <= set(CHART_RUN_RETRIES)
    assert set(daemon["sensors"]) <= set(CHART_THREADS) and set(daemon["schedules"]) <= set(CHART_THREADS)

    assert values["computeLogManager"]["type"] in CHART_COMPUTE_LOG_MANAGERS
    assert set(values["retention"]) <= CHART_RETENTION
    assert values["telemetry"]["enabled"] is False


def test_helm_run_launcher_validates_and_renders_the_same_run_pod_as_deploy_yaml(offline_kubeconfig):
    from dagster_k8s import K8sRunLauncher

    values = _yaml(HELM_VALUES)
    chart_config = _chart_run_launcher(values)
    _process(K8sRunLauncher.config_type(), chart_config)

    _, from_chart = _render_run_worker_job(chart_config, offline_kubeconfig)
    _, from_yaml = _render_run_worker_job(_yaml(INSTANCE_YAML)["run_launcher"]["config"], offline_kubeconfig)
    chart_container, yaml_container = _run_container(from_chart), _run_container(from_yaml)

    for key in ("resources", "securityContext", "imagePullPolicy", "env"):
        assert chart_container[key] == yaml_container[key], key
    assert _env_from(chart_container, "secretRef") == _env_from(yaml_container, "secretRef") == SECRETS
    # With the chart, QRL_* settings reach runs from the user deployment's env (includeConfigInLaunchedRuns)
    # instead of the hand-made qrl-platform-env ConfigMap.
    assert _env_from(chart_container, "configMapRef") == []
    assert _user_deployment(values)["includeConfigInLaunchedRuns"]["enabled"] is True
    for path in (("spec", "backoffLimit"), ("spec", "ttlSecondsAfterFinished")):
        assert from_chart[path[0]][path[1]] == from_yaml[path[0]][path[1]]
    chart_pod, yaml_pod = from_chart["spec"]["template"], from_yaml["spec"]["template"]
    assert chart_pod["spec"]["securityContext"] == yaml_pod["spec"]["securityContext"]
    assert chart_pod["spec"]["serviceAccountName"] == yaml_pod["spec"]["serviceAccountName"]
    assert chart_pod["metadata"]["annotations"] == yaml_pod["metadata"]["annotations"]


def test_helm_rendered_instance_validates_and_agrees_with_deploy_yaml(tmp_path, dummy_pg_env):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresRunStorage
    from dagster_postgres.utils import pg_url_from_config

    values = _yaml(HELM_VALUES)
    chart = _chart_instance(values)
    _dagster_instance_config(tmp_path, chart)  # the whole rendered instance, through Dagster's schema

    run_storage = _process(PostgresRunStorage.config_type(), chart["run_storage"]["config"])
    assert pg_url_from_config(run_storage).startswith("postgresql+psycopg2://dagster:")
    _process(QueuedRunCoordinator.config_type(), chart["run_coordinator"]["config"])

    deploy = _yaml(INSTANCE_YAML)
    assert chart["run_coordinator"]["config"] == deploy["run_coordinator"]["config"]
    assert chart["concurrency"] == deploy["concurrency"]
    for section in ("run_monitoring", "run_retries", "sensors", "schedules", "retention", "telemetry"):
        assert chart[section] == deploy[section], section
    # The chart renders its no-op compute log manager; deploy/dagster.yaml keeps Dagster's default (local
    # files in the run pod): either way the UI shows no raw stdout/stderr of a run pod.
    assert chart["compute_logs"]["class"] == "NoOpComputeLogManager" and "compute_logs" not in deploy
    assert (
        chart["run_storage"]["config"]["postgres_db"]["scheme"]
        == deploy["storage"]["postgres"]["postgres_db"]["scheme"]
    )
    assert _chart_run_launcher(values)["job_namespace"] == deploy["run_launcher"]["config"]["job_namespace"]
    assert values["global"]["postgresqlSecretName"] == deploy["run_launcher"]["config"]["postgres_password_secret"]
    assert values["global"]["dagsterHome"] == deploy["run_launcher"]["config"]["dagster_home"]


# ---------------------------------------------------------------------------------------------------
# (3) the Dockerfile and its build context
# ---------------------------------------------------------------------------------------------------


def _dockerfile_user() -> str:
    users = [args for name, args in _dockerfile_instructions() if name == "USER"]
    assert users, "the image must not run as root"
    return users[-1].strip()


def test_dockerfile_installs_the_package_as_a_non_root_user():
    instructions = _dockerfile_instructions()
    defaults = dict(arg.split("=", 1) for name, arg in instructions if name == "ARG" and "=" in arg)
    froms = [arg.split()[0] for name, arg in instructions if name == "FROM"]
    images = [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image) for image in froms]
    assert images and all(image == "python:3.11-slim" for image in images), images

    runs = [args for name, args in instructions if name == "RUN"]
    # `pip install .`: the build stage turns the source tree (.) into wheels, the runtime stage installs them.
    assert any(re.search(r"\bpip (wheel|install)\b.*\s\.(\s|$)", run) for run in runs), runs
    last_stage = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    assert any("pip install" in args for name, args in last_stage if name == "RUN")

    user = _dockerfile_user()
    assert re.fullmatch(r"\d+(:\d+)?", user), "numeric USER, so Kubernetes can verify runAsNonRoot"
    assert int(user.split(":")[0]) != 0
    envs = " ".join(args for name, args in last_stage if name == "ENV")
    assert "QRL_HOME=" in envs and "DAGSTER_HOME=/opt/dagster/dagster_home" in envs
    assert "ENTRYPOINT" not in {name for name, _ in instructions}, "Kubernetes args must replace CMD"
    assert str(CODE_SERVER_PORT) in {args.strip() for name, args in instructions if name == "EXPOSE"}


def test_dockerfile_cmd_and_chart_code_server_args_parse_as_the_same_code_server():
    cmd = _dockerfile_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    from_image = _dagster_cli_params(cmd)
    from_chart = _dagster_cli_params(_chart_code_server_argv(_user_deployment(_yaml(HELM_VALUES))))
    for params in (from_image, from_chart):
        assert params["module_name"] == DEFINITIONS_MODULE
        assert params["port"] == CODE_SERVER_PORT
        assert params["host"] == "0.0.0.0"

    healthchecks = [args for name, args in _dockerfile_instructions() if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    probe = _exec_form(healthchecks[0].split("CMD", 1)[1].strip())
    assert _dagster_cli_params(probe)["port"] == CODE_SERVER_PORT


def test_image_cmd_serves_the_code_location_and_passes_its_healthcheck(tmp_path):
    """Run the image's CMD (on a loopback port) from this virtualenv and probe it with the image's
    HEALTHCHECK command: the container would come up healthy with these exact arguments."""
    port = str(_free_port())
    cmd = _dockerfile_cmd()
    cmd[cmd.index("-p") + 1] = port
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    healthcheck = next(args for name, args in _dockerfile_instructions() if name == "HEALTHCHECK")
    probe = _exec_form(healthcheck.split("CMD", 1)[1].strip())
    probe[probe.index("-p") + 1] = port

    bin_dir = Path(sys.executable).parent
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "QRL_HOME": str(tmp_path / "qrl_home"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "QRL_MARKET_SOURCE": "demo",
    }
    log = tmp_path / "code-server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            check = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
            if check.returncode == 0:
                break
            assert server.poll() is None, f"code server exited ({shlex.join(cmd)}):\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"not healthy in 120 s:\n{check.stdout}{check.stderr}\n{log.read_text()}"
            )
            time.sleep(1)
    finally:
        stop_process(server, timeout=30)


def test_dockerignore_keeps_local_state_out_and_what_the_dockerfile_copies_in():
    for excluded in (
        ".venv/bin/python",
        ".qrl/warehouse.sqlite",
        ".git/HEAD",
        "qrl_platform/__pycache__/definitions.cpython-311.pyc",
        "qrl_platform_tests/conftest.py",
        ".pytest_cache/v/cache/lastfailed",
        "qrl_platform.egg-info/PKG-INFO",
        ".env",
    ):
        assert not _in_build_context(excluded), excluded

    copied = []
    for name, args in _dockerfile_instructions():
        if name == "COPY" and "--from" not in args:
            copied += args.split()[:-1]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert _in_build_context(source), f"{source} is copied by the Dockerfile but excluded by .dockerignore"
    package_files = [p for p in (ROOT / "qrl_platform").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert package_files
    for path in package_files:
        assert _in_build_context(path.relative_to(ROOT).as_posix()), path


# ---------------------------------------------------------------------------------------------------
# (4) workspace.yaml, and one module name everywhere
# ---------------------------------------------------------------------------------------------------


def test_workspace_pyproject_image_and_chart_all_load_the_same_definitions_module():
    import tomllib

    import dagster as dg

    workspace = _yaml(ROOT / "workspace.yaml")
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"] if "python_module" in entry]
    assert modules == [DEFINITIONS_MODULE]

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == DEFINITIONS_MODULE
    assert _dagster_cli_params(_dockerfile_cmd())["module_name"] == DEFINITIONS_MODULE

    module = importlib.import_module(DEFINITIONS_MODULE)
    assert isinstance(module.defs, dg.Definitions)


# ---------------------------------------------------------------------------------------------------
# The webserver is reachable only through oauth2-proxy: ClusterIP Service, proxy values, NetworkPolicy
# ---------------------------------------------------------------------------------------------------
PROXY_VALUES = DEPLOY / "helm" / "oauth2-proxy-values.yaml"
NETWORK_POLICY = DEPLOY / "k8s" / "networkpolicy.yaml"
WEBSERVER_SERVICE = "dagster-dagster-webserver"  # <release>-<chart>-webserver for release "dagster"
# Top-level and `config` keys of the oauth2-proxy/oauth2-proxy chart (helm/oauth2-proxy/values.yaml in
# oauth2-proxy/manifests); extraArgs are oauth2-proxy command-line flags (its docs, "Command Line Options").
PROXY_CHART_TOP_LEVEL = {
    "config", "image", "imagePullSecrets", "extraArgs", "extraEnv", "authenticatedEmailsFile", "service",
    "serviceAccount", "ingress", "resources", "extraVolumes", "extraVolumeMounts", "priorityClassName",
    "affinity", "tolerations", "nodeSelector", "proxyVarsAsSecrets", "livenessProbe", "readinessProbe",
    "securityContext", "podAnnotations", "podLabels", "replicaCount", "podDisruptionBudget",
    "podSecurityContext", "httpScheme", "htpasswdFile", "sessionStorage", "redis", "checkDeprecation",
    "metrics", "alphaConfig", "extraObjects", "deploymentAnnotations", "autoscaling", "namespaceOverride",
}  # fmt: skip
PROXY_CHART_CONFIG = {
    "clientID", "clientSecret", "cookieSecret", "existingSecret", "cookieName", "google", "configFile",
    "existingConfig", "annotations", "requiredSecretKeys",
}  # fmt: skip
PROXY_FLAGS = {
    "provider", "oidc-issuer-url", "allowed-group", "skip-jwt-bearer-tokens", "extra-jwt-issuers",
    "reverse-proxy", "cookie-secure", "skip-provider-button", "email-domain", "upstream",
    "pass-access-token", "set-authorization-header", "cookie-expire", "cookie-refresh", "http-address",
}  # fmt: skip


def _network_policy():
    from kubernetes.client import ApiClient

    class _Response:  # ApiClient.deserialize reads `.data`, as from an HTTP answer
        def __init__(self, body: dict):
            self.data = json.dumps(body)

    document = _yaml(NETWORK_POLICY)
    client = ApiClient()
    policy = client.deserialize(_Response(document), "V1NetworkPolicy")
    return document, policy, client.sanitize_for_serialization(policy)


def test_network_policy_is_a_valid_kubernetes_object_and_admits_only_the_proxy_to_the_webserver():
    document, policy, round_trip = _network_policy()
    # A misspelt key would be dropped by the typed model, so the round trip must give the file back.
    assert round_trip == document
    assert (policy.api_version, policy.kind) == ("networking.k8s.io/v1", "NetworkPolicy")
    webserver = _yaml(HELM_VALUES)["dagsterWebserver"]
    proxy = _yaml(PROXY_VALUES)
    assert policy.spec.pod_selector.match_labels == webserver["labels"]
    assert policy.spec.policy_types == ["Ingress"]
    [rule] = policy.spec.ingress
    [source] = rule._from
    assert source.pod_selector.match_labels == proxy["podLabels"] and source.namespace_selector is None
    assert source.ip_block is None
    assert [(port.protocol, port.port) for port in rule.ports] == [("TCP", webserver["service"]["port"])]


def test_webserver_service_is_cluster_internal_and_the_chart_ingress_stays_off():
    values = _yaml(HELM_VALUES)
    service = values["dagsterWebserver"]["service"]
    assert set(service) <= {"type", "port", "annotations"}
    assert service["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False


def test_oauth2_proxy_values_use_chart_keys_keep_secrets_out_and_point_at_the_webserver():
    proxy = _yaml(PROXY_VALUES)
    assert set(proxy) <= PROXY_CHART_TOP_LEVEL, set(proxy) - PROXY_CHART_TOP_LEVEL
    assert set(proxy["config"]) <= PROXY_CHART_CONFIG, set(proxy["config"]) - PROXY_CHART_CONFIG
    assert set(proxy["extraArgs"]) <= PROXY_FLAGS, set(proxy["extraArgs"]) - PROXY_FLAGS
    # Credentials come from the Secret only, never from this file.
    assert proxy["config"]["existingSecret"] and not {"clientID", "clientSecret", "cookieSecret"} & set(proxy["config"])
    assert proxy["service"]["type"] == "ClusterIP"
    assert proxy["extraArgs"]["skip-jwt-bearer-tokens"] is True  # the CLI's bearer token is verified
    assert proxy["extraArgs"]["allowed-group"]
    upstreams = re.findall(r'upstreams\s*=\s*\[\s*"([^"]+)"', proxy["config"]["configFile"])
    port = _yaml(HELM_VALUES)["dagsterWebserver"]["service"]["port"]
    assert upstreams == [f"http://{WEBSERVER_SERVICE}.{RELEASE_NAMESPACE}.svc.cluster.local:{port}"]
