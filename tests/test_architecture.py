"""The shape of the package, checked on its source: no import cycle, the contract at the bottom, no protocol
named outside the probes, and no protocol library loaded until a probe session runs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otprobe"
# what may name a protocol: the allowlist (reviewed by hand), the registry of built-ins and the probe modules
PROTOCOL_FILES = {PACKAGE / "safety.py", *(PACKAGE / "probes").glob("*.py")}
PROTOCOL_WORD = re.compile(r"\b(modbus|s7|enip|bacnet|snmp|opcua)\b", re.IGNORECASE)
LIBRARIES = ("pymodbus", "snap7", "pycomm3", "bacpypes3", "pysnmp", "pyasn1", "asyncua", "cryptography")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _module_level(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported: at top level, in class bodies and under `if` (which
    includes `if TYPE_CHECKING:`, read by the type checker), not inside functions (lazy loads)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _with_packages(name: str) -> list[str]:
    """`name` and the packages importing it runs first (otprobe.probes.s7 runs otprobe.probes' __init__)."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def imports_of(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _module_level(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from . import x, from .y import z
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        targets.add(base)
        targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    # the importer's own packages are already being imported when its import statements run: no edge to them
    running = set(_with_packages(name))
    return {m for target in targets for m in _with_packages(target) if m in MODULES and m not in running}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_inside_the_package() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_reports_a_cycle_and_the_graph_is_real() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # what the walk must see: a plain import, a TYPE_CHECKING one, a submodule named in a from-import, packages
    assert {"otprobe.contract", "otprobe.errors", "otprobe.probes.s7_wire"} <= imports_of("otprobe.probes.s7")
    assert {"otprobe.pacing", "otprobe.pacing.plan"} <= imports_of("otprobe.scan")  # a package runs first
    assert "otprobe.model" in imports_of("otprobe.contract")  # under `if TYPE_CHECKING:` only
    assert "otprobe.probes.s7" not in imports_of("otprobe.probes")  # the registry loads probes lazily


def test_the_contract_is_the_bottom() -> None:
    code = ("import sys, otprobe.contract\n"
            "print(sorted(m for m in sys.modules if m.startswith('otprobe')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert loaded.stdout.strip() == "['otprobe', 'otprobe.contract']"
    for name in MODULES:
        if name.startswith("otprobe.pacing."):
            # pacing sits below the probes, the link and the profile: only the scheduler, which creates the links,
            # imports one
            allowed = {"otprobe.link"} if name == "otprobe.pacing.scheduler" else set()
            assert not ({"otprobe.probes", "otprobe.link", "otprobe.profile"} - allowed) & imports_of(name), name


def _strings_and_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


CORE = sorted(set(MODULES.values()) - PROTOCOL_FILES)


@pytest.mark.parametrize("path", CORE, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_core_file_names_a_protocol(path: Path) -> None:
    """Strings (help texts and docstrings included) and imports; comments may still give an example."""
    named = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for line, text in _strings_and_imports(path)
             if PROTOCOL_WORD.search(text)]
    assert not named, "a core file names a protocol; say it in the probe instead:\n" + "\n".join(named)


def test_the_protocol_check_would_catch_a_name() -> None:
    assert PROTOCOL_WORD.search("Comma-separated subset of modbus,s7,enip")
    assert PROTOCOL_WORD.search("otprobe.probes.enip.EnipProbe")
    assert not PROTOCOL_WORD.search("s7comm-plus or enipx")  # other words are not protocol names
    assert len(CORE) > 20 and PACKAGE / "scan.py" in CORE and PACKAGE / "profile.py" in CORE


def test_planning_a_scan_loads_no_protocol_library() -> None:
    """Reading a profile, loading every probe class and planning a scan import no protocol library: only a probe
    session does (the probes import them where a connection starts)."""
    code = (
        "import sys\nfrom datetime import UTC, datetime\n"
        "from otprobe.probes import probe_classes\nfrom otprobe.profile import load_profile\n"
        "from otprobe.scan import prepare\n"
        "probe_classes()\n"
        "prepared = prepare(load_profile('lab'), 'lab', ['127.0.1.0/28'], now=datetime.now(UTC), check_window=False)\n"
        "assert prepared.plan.total_packets > 0 and len(prepared.probes) == len(probe_classes())\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIBRARIES!r}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert (loaded.returncode, loaded.stdout.strip()) == (0, "[]"), loaded.stderr
