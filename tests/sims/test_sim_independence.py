"""`simulators/` must import nothing from otprobe: the plant is the independent judge of the probes."""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATORS = Path(__file__).parents[2] / "simulators"


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ) and node.args and isinstance(node.args[0], ast.Constant):
            modules.add(str(node.args[0].value))
    return modules


def test_simulators_import_nothing_from_otprobe() -> None:
    files = sorted(SIMULATORS.rglob("*.py"))
    assert len(files) >= 6  # the package, its launcher, the plant core and the protocol devices
    offenders = {
        f"{path.relative_to(SIMULATORS.parent)}: {module}"
        for path in files
        for module in imported_modules(path)
        if module == "otprobe" or module.startswith("otprobe.")
    }
    assert not offenders


def test_the_check_would_catch_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom otprobe.model import Identity\nimportlib.import_module('otprobe')\n")
    assert imported_modules(sample) == {"os", "otprobe.model", "otprobe"}
