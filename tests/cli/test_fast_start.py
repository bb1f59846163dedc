"""Fast start: the commands that only print or read profiles load no protocol library, and help and version not
even the profile, inventory and validation machinery.

Each command runs in a fresh child interpreter (the parent's sys.modules already holds everything the other tests
imported), in-process through the same `app` the `otprobe` script calls, and the child writes the modules it holds
at exit. Every run must also succeed with its normal output, so a command that failed before reaching its work
cannot pass by having imported nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import otprobe

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_LIBRARIES = ("pymodbus", "snap7", "pycomm3", "asyncua", "pysnmp", "bacpypes3")
# what a command that reads no profile and no inventory has no use for
# the report's template engine and plotting library load only when a report is written
REPORT_LIBRARIES = ("jinja2", "matplotlib")
# the central inventory's libraries load only for a postgresql:// inventory
CENTRAL_LIBRARIES = ("sqlalchemy", "alembic", "psycopg")
PRINT_ONLY = (*PROTOCOL_LIBRARIES, *REPORT_LIBRARIES, *CENTRAL_LIBRARIES, "pydantic", "yaml", "sqlite3")
# --help lists no installed probe (a command's own help does), so it reads no package's metadata either
HELP_ONLY = (*PRINT_ONLY, "importlib.metadata")

CHILD = """
import json, sys
from otprobe.cli import app

report, *imports = sys.argv[1].split(",")
for name in imports:  # the control case: a module loaded on purpose before the command
    __import__(name)
try:
    app(sys.argv[2:], prog_name="otprobe")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
with open(report, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def run_cli(tmp_path: Path, *args: str, preload: tuple[str, ...] = ()) -> tuple[int, str, set[str]]:
    """(exit code, stdout, modules loaded) of `otprobe ARGS` in a child interpreter. A package's submodule is never
    loaded without the package, so a top-level name stands for the whole library."""
    report = tmp_path / "modules.json"
    # the checkout under test, whatever is installed; no inventory outside the test's folder
    env = {**os.environ, "PYTHONPATH": str(REPO), "OTPROBE_DB": str(tmp_path / "inventory.db"), "NO_COLOR": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, ",".join((str(report), *preload)), *args],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    result = json.loads(report.read_text())
    assert result["code"] == child.returncode, child.stderr
    return child.returncode, child.stdout, set(result["modules"])


COMMANDS = {  # name: (arguments, expected in the output, packages it must not load)
    "help": (("--help",), "Usage: otprobe", HELP_ONLY),
    "version": (("--version",), f"otprobe {version('otprobe')}", PRINT_ONLY),
    "profiles list": (("profiles", "list"), "maintenance-window", (*PROTOCOL_LIBRARIES, *REPORT_LIBRARIES)),
    "plan": (("plan", "127.0.1.1", "--profile", "lab"), "total", PROTOCOL_LIBRARIES),
    "report help": (("report", "--help"), "Usage: otprobe report", (*PROTOCOL_LIBRARIES, *REPORT_LIBRARIES)),
    "scan help": (("scan", "--help"), "s7,enip,modbus", (*PROTOCOL_LIBRARIES, *CENTRAL_LIBRARIES)),  # named, not loaded
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_that_sends_nothing_loads_no_protocol_library(tmp_path: Path, command: str) -> None:
    args, expected, unwanted = COMMANDS[command]
    code, out, loaded = run_cli(tmp_path, *args)
    assert code == 0 and expected in out
    assert loaded.isdisjoint(unwanted), sorted(loaded.intersection(unwanted))


def test_the_check_sees_a_protocol_library_that_is_loaded(tmp_path: Path) -> None:
    code, _, loaded = run_cli(tmp_path, "--help", preload=("pymodbus",))
    assert code == 0 and "pymodbus" in loaded


def test_version_is_the_installed_distributions_and_the_packages() -> None:
    assert version("otprobe") == otprobe.__version__
