"""Airflow stays at the edge: ``pipelines/airflow_edge/`` holds what the DAG files, the Celery workers and the
command line need of Airflow (operator, callbacks, stand-in DAG, Asset URIs, REST client, worker preload).

The rule, read from the source with ``ast`` (so an import inside a function counts as much as one at the top):
no module of ``pipelines`` outside ``pipelines/airflow_edge/`` imports ``airflow`` or ``celery``, and none
imports ``pipelines.airflow_edge``, except ``pipelines/cli.py``. The command line is a shell like ``dags/``,
``plugins/`` and ``scripts/``: its ``train``, ``land`` and ``replay`` commands drive the stack's Airflow through
the edge's REST client, and nothing imports the command line. The steps thus run the same in a DAG, in a
test and in a benchmark.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
EDGE = PIPELINES / "airflow_edge"
SHELLS = {PIPELINES / "cli.py"}  # may import the edge, never Airflow itself
AIRFLOW = ("airflow", "celery")


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, module: str = "", is_package: bool = False) -> set[str]:
    """Every module an ``import``, a ``from ... import`` (relative ones resolved against ``module``) or an
    ``importlib.import_module``/``__import__`` of a literal name imports, wherever it stands. ``from a import b``
    counts as ``a`` and ``a.b`` (``b`` may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.add(node.args[0].value)
    return found


def imports_of(path: Path) -> set[str]:
    return imported_modules(ast.parse(path.read_text(), str(path)), module_name(path), path.name == "__init__.py")


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def core_modules() -> list[Path]:
    return sorted(p for p in PIPELINES.rglob("*.py") if not p.is_relative_to(EDGE))


def test_the_scan_sees_imports_wherever_they_stand():
    tree = ast.parse("import airflow.sdk\n"
                     "def f():\n    from airflow.providers.standard.operators.hitl import ApprovalOperator\n"
                     "def g():\n    from .airflow_edge import assets\n"
                     "def h():\n    importlib.import_module('celery.signals')\n")
    found = imported_modules(tree, "pipelines.replay")
    assert {"airflow.sdk", "airflow.providers.standard.operators.hitl", "pipelines.airflow_edge.assets",
            "celery.signals"} <= found
    # The edge itself is read the same way: it is where Airflow is imported.
    assert any(is_within(m, "airflow") for m in imports_of(EDGE / "approval_operator.py"))
    assert any(is_within(m, "celery") for m in imports_of(EDGE / "celery_worker.py"))


def test_no_module_outside_the_edge_imports_airflow():
    offenders = {str(path.relative_to(PIPELINES.parent)): airflow for path in core_modules()
                 if (airflow := sorted(m for m in imports_of(path) if any(is_within(m, a) for a in AIRFLOW)))}
    assert not offenders, f"Airflow-facing code belongs in pipelines/airflow_edge/: {offenders}"


def test_no_core_module_imports_the_edge():
    offenders = {str(path.relative_to(PIPELINES.parent)): edge for path in core_modules() if path not in SHELLS
                 if (edge := sorted(m for m in imports_of(path) if is_within(m, "pipelines.airflow_edge")))}
    assert not offenders, f"pass what these need in from the DAG file or the command line instead: {offenders}"


def test_nothing_in_pipelines_imports_the_command_line():
    """The command line may import the edge because it is a shell: nothing builds on it."""
    importers = [p.relative_to(PIPELINES.parent) for p in PIPELINES.rglob("*.py")
                 if p.name != "cli.py" and any(is_within(m, "pipelines.cli") for m in imports_of(p))]
    assert not importers


def test_the_command_line_reaches_airflow_over_http_only():
    """The edge package's ``__init__`` imports nothing, and the edge modules the command line imports import
    neither Airflow nor Celery at their top: ``mlops-loop`` does not load Airflow to call its REST API."""
    assert not imports_of(EDGE / "__init__.py")
    used = {m for shell in SHELLS for m in imports_of(shell) if is_within(m, "pipelines.airflow_edge")}
    paths = [PIPELINES.parent / (m.replace(".", "/") + ".py") for m in used]
    assert [p for p in paths if p.exists()], "the command line no longer uses the edge: drop it from SHELLS"
    for path in filter(Path.exists, paths):
        top = ast.Module(body=[n for n in ast.parse(path.read_text()).body
                               if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
        airflow = [m for m in imported_modules(top, module_name(path)) if any(is_within(m, a) for a in AIRFLOW)]
        assert not airflow, f"{path.name} imports {airflow} at its top, and the command line imports it"


@pytest.mark.parametrize("config", ["docker-compose.yaml", "scripts/stack.py"])
def test_the_celery_config_named_by_dotted_path_exists(config):
    text = (PIPELINES.parent / config).read_text()
    [dotted] = re.findall(r"AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS\W+([\w.]+)", text)
    module, _, attribute = dotted.rpartition(".")
    path = PIPELINES.parent / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{config} names {dotted}, but there is no {path}"
    assigned = {t.id for node in ast.parse(path.read_text()).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert attribute in assigned, f"{config} names {dotted}, but {path.name} assigns no {attribute}"
