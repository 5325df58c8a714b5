"""The qrl_platform code location (workspace.yaml, `dagster dev` and `dg` point here).

Everything Dagster knows lives under `qrl_platform/defs/`, one folder per domain; this module only
loads that folder. Read a domain's folder to see its assets, checks, jobs, schedules and sensors.
"""

from pathlib import Path

import dagster as dg

import qrl_platform.defs

# A plain Definitions object rather than a `@dg.definitions` function: the CLI, the tests and the
# benchmarks use it directly, and every Dagster tool accepts either.
defs = dg.load_defs(defs_root=qrl_platform.defs, project_root=Path(__file__).resolve().parent.parent)

# The resources as the code location binds them (tests and the CLI reuse them).
RESOURCES = dict(defs.resources or {})
