"""The layers hold: the core imports no Dagster and no wiring, and nothing imports in a circle.

Core = every module of the package except the Dagster wiring (`qrl_platform/defs/`), the code
location entry point (`definitions.py`) and the `qrl` CLI, which drives Dagster. The modules are
found by walking the package, so a new core module is covered without editing this test.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qrl_platform"
WIRING_PREFIXES = ("qrl_platform.defs", "qrl_platform.definitions", "qrl_platform.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts  # Alembic's env.py runs inside Alembic, not as an import
    }


def _is_wiring(module: str) -> bool:
    return module.startswith(WIRING_PREFIXES)


CORE = sorted(name for name in _all_modules() if not _is_wiring(name))


def _imports(path: Path) -> set[str]:
    """qrl_platform modules imported anywhere in the file (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("qrl_platform"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qrl_platform"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    modules = _all_modules()
    return {name for name in found if name in modules}


def test_the_core_is_found():
    assert {"qrl_platform.calendar", "qrl_platform.settings", "qrl_platform.treasury.mexc_client"} <= set(CORE)
    assert len(CORE) > 40


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_without_dagster(module):
    code = f"import sys, {module}; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", f"{module} loads Dagster"


def test_the_cli_loads_the_tear_sheet_only_for_qrl_report():
    """The evaluation and chart libraries behind `qrl report` cost a third of a second to import; every
    other command (and `qrl --help`) builds its parser without them."""
    code = (
        "import sys, contextlib, io, qrl_platform.cli as cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['--help'])\n"
        "print('qrl_platform.evaluation.tearsheet' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "building the CLI imported the tear sheet"


def test_load_works_without_importing_dagster(tmp_path):
    code = (
        "import sys, qrl_platform; from qrl_platform.warehouse import Warehouse; "
        f"Warehouse('sqlite:///{tmp_path}/w.sqlite').migrate(); "
        "frame = qrl_platform.load('strategy_signals', '2024-12-24'); "
        "print(frame.height, 'dagster' in sys.modules)"
    )
    env = {"QRL_HOME": str(tmp_path), "QRL_WAREHOUSE_URL": f"sqlite:///{tmp_path}/w.sqlite", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]


def test_no_core_module_imports_the_wiring():
    offenders = {
        module: sorted(name for name in _imports(_all_modules()[module]) if _is_wiring(name)) for module in CORE
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_no_import_cycles():
    modules = _all_modules()
    graph = {name: _imports(path) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own children is how packages export; the edge back from a
    # child to its package is the cycle to look for, so keep every edge.
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodule
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for name, path in _all_modules().items():
        text = path.read_text(encoding="utf-8")
        if name != "qrl_platform.settings" and ("os.environ" in text or "getenv(" in text):
            readers.append(name)
    assert readers == []


# Who may call `settings()`: the entry points (the `qrl` commands, and `qrl_platform.load`, the notebook's),
# which read them once per command or call, and the modules that build the Dagster resources from them
# (the shared resources, and the treasury's exchange resource), once per run or tick. Everything else,
# core and wiring alike, receives values: as parameters, or as a resource's fields.
READS_THE_SETTINGS = {
    "qrl_platform",
    "qrl_platform.cli",
    "qrl_platform.cli_deployment",
    "qrl_platform.cli_report",
    "qrl_platform.cli_status",
    "qrl_platform.defs.resources",
    "qrl_platform.defs.treasury.resources",
}


def _imports_settings_function(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "qrl_platform.settings":
            if any(alias.name == "settings" for alias in node.names):
                return True
        if isinstance(node, ast.ImportFrom) and node.module == "qrl_platform":
            if any(alias.name == "settings" for alias in node.names):  # the module, to call settings.settings()
                return True
        if isinstance(node, ast.Import) and any(alias.name == "qrl_platform.settings" for alias in node.names):
            return True
    return False


def test_only_entry_points_and_the_resource_builders_read_the_settings():
    """A module outside READS_THE_SETTINGS imports only the settings' types and constants, never
    `settings()` itself (core modules and Dagster wiring alike)."""
    readers = sorted(
        name
        for name, path in _all_modules().items()
        if name != "qrl_platform.settings" and _imports_settings_function(path)
    )
    assert set(readers) <= READS_THE_SETTINGS, set(readers) - READS_THE_SETTINGS
    assert "qrl_platform.defs.resources" in readers  # the rule looks at the right thing


def test_resource_methods_do_not_read_the_settings():
    """The resource-building modules call `settings()` only in their builders, never inside a resource
    class: a resource works from its fields."""
    offenders = []
    for name in ("qrl_platform.defs.resources", "qrl_platform.defs.treasury.resources"):
        tree = ast.parse(_all_modules()[name].read_text(encoding="utf-8"))
        for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            for node in ast.walk(cls):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "settings":
                    offenders.append(f"{name}.{cls.name}")
    assert offenders == []


def test_settings_hide_secrets_and_list_them_for_redaction():
    from qrl_platform.settings import settings

    current = settings(
        {
            "MEXC_API_SECRET": "s3cr3t-mexc-value",
            "QRL_SLACK_WEBHOOK_URL": "https://hooks.example/T/B/tok3n",
            "QRL_WAREHOUSE_URL": "postgresql+psycopg://qrl:db-pa55word@db/qrl",
            "QRL_REDIS_URL": "redis://:redis-pa55@cache:6379/0",
            "QRL_HOME": "/data/qrl",
        }
    )
    shown = repr(current)
    for secret in ("s3cr3t-mexc-value", "tok3n", "db-pa55word", "redis-pa55"):
        assert secret not in shown
    assert sorted(current.secret_values()) == sorted(
        ["s3cr3t-mexc-value", "https://hooks.example/T/B/tok3n", "db-pa55word", "redis-pa55"]
    )
    assert current.warehouse_url == "postgresql+psycopg://qrl:db-pa55word@db/qrl"
    assert current.qrl_home == "/data/qrl"


def test_a_bad_setting_names_its_variable():
    from qrl_platform.settings import settings

    with pytest.raises(ValueError, match="QRL_MARKET_SOURCE must be 'demo' or 'live', got 'paper'"):
        settings({"QRL_MARKET_SOURCE": "paper"})
    with pytest.raises(ValueError, match="QRL_DEMO_UNIVERSE"):
        settings({"QRL_DEMO_UNIVERSE": "many"})
