"""The reliability suite with its full counts, printing the figures table (docs/reliability.md).

    python benchmarks/reliability.py [--ci] [pytest arguments…]

Runs `pytest qrl_platform_tests/reliability -m reliability` with QRL_RELIABILITY_FULL=1: 500 quarter
hours of the order soak, 20 SIGKILLs per crash target, the secrets scan. `--ci` keeps the reduced
counts `.ci/run` uses (200 quarter hours, 2 kills per target). The table is printed at the end of the
pytest output and written as JSON to reliability-figures.json (or QRL_RELIABILITY_REPORT).
Single counts can be set with QRL_RELIABILITY_QUARTER_HOURS and QRL_RELIABILITY_KILLS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    args = sys.argv[1:]
    env = dict(os.environ)
    if "--ci" in args:
        args.remove("--ci")
    else:
        env["QRL_RELIABILITY_FULL"] = "1"
    env.setdefault("QRL_RELIABILITY_REPORT", str(ROOT / "reliability-figures.json"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "qrl_platform_tests/reliability", "-m", "reliability", "-q", *args]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
