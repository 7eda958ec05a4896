"""The layers of ``../shared/DESIGN.md`` point one way, read from the source itself.

Every ``import`` of the package (top-level or inside a function: a lazy
import is still a dependency) is checked against the layer order, so a
report that loads the Ray layer, or an evaluation that imports the forge,
fails here instead of in a reader's traceback.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rkl_bench"
LAYER = {
    "errors": 0, "layout": 0, "safe_load": 0, "scratch": 0, "storage": 0,
    "data": 1,
    "algos": 2,
    "forge": 3, "evaluation": 3, "toys": 3,
    "training": 4,
    "service": 5,
    "report": 6,
    "cli": 7, "__init__": 7, "__main__": 7,
}
FORBIDDEN = {("evaluation", "forge"), ("report", "service")}
"""Pairs the order alone would allow but the design rules out."""
RAY_AND_OPTUNA = ("ray", "optuna")


def imports() -> list[tuple[str, str, str]]:
    """(importing file, its part, imported module) for every import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        part = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(relative), part, node.module))
            elif isinstance(node, ast.Import):
                found.extend((str(relative), part, alias.name) for alias in node.names)
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts <= set(LAYER), f"give {sorted(parts - set(LAYER))} a layer in this test and in DESIGN.md"


def test_imports_point_down_the_layers():
    wrong = []
    for where, part, module in imports():
        if not module.startswith("rkl_bench."):
            continue
        target = module.split(".")[1]
        if target == part:
            continue
        if LAYER[target] > LAYER[part] or (part, target) in FORBIDDEN:
            wrong.append(f"{where} imports {module}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_only_the_service_imports_ray_and_optuna():
    wrong = [f"{where} imports {module}" for where, part, module in imports()
             if module.split(".")[0] in RAY_AND_OPTUNA and part != "service"]
    assert not wrong, "\n".join(wrong)


def test_building_a_search_report_loads_neither_ray_nor_the_service(tmp_path):
    """What the order test cannot see: a module of the report importing, at run time, one that imports Ray."""
    code = (
        "import sys\n"
        "import rkl_bench.report, rkl_bench.report.search_report, rkl_bench.report.search_figures, rkl_bench.training.archive\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna') or m.startswith('rkl_bench.service'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_private_ray_and_optuna_apis_are_used_only_in_their_adapter():
    """``service/private_apis.py`` holds every private access (and names the versions it was written against)."""
    pattern = re.compile(r"ray\._private|\._internal\b|_internal\.|\._ot_\w+|\._completed_trials|\._storage\b|\._trial_id\b")
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "private_apis.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if pattern.search(code) and not code.strip().startswith(('"', "'", "``")):
                wrong.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not wrong, "\n".join(wrong)
