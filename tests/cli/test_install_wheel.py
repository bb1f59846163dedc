"""A normal install works: the wheel holds every package and data file, and the installed command runs.

This is the slow test of `make test` (about a minute): it builds the wheel as `pip install .` would, installs it
with its dependencies (from the package index or pip's cache) into a fresh virtual environment outside the
repository, and runs `otprobe` from a folder outside the repository too, so that nothing can be found through the
checkout: the shipped profiles, the caution rules and the demo plant must all come from the installed package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[2]
# the source trees that install as packages, and where they land; profiles/ stays at the top of the repository
PACKAGE_ROOTS = {"otprobe": "otprobe", "simulators": "simulators", "profiles": "otprobe/profiles"}
SHIPPED_PROFILES = sorted(path.stem for path in (REPO / "profiles").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds, from a copy of the checkout (a build writes build/ and *.egg-info beside
    its sources, and other work may be using the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*.db*"))
    run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--quiet", "-w", base / "dist", cwd=base)
    (built,) = (base / "dist").glob("otprobe-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(the installed `otprobe` script, a folder outside the repository to run it in, its environment)."""
    base = tmp_path_factory.mktemp("installed")
    assert not base.is_relative_to(REPO)
    venv = base / "venv"
    # no pip inside the new environment (ensurepip takes seconds): this interpreter's pip installs into it
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", wheel, cwd=base)
    workdir = base / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OTPROBE_DB=str(base / "inventory.db"), NO_COLOR="1", COLUMNS="200")
    return venv / "bin" / "otprobe", workdir, env


def test_the_wheel_holds_every_package_and_data_file_of_the_source_tree(wheel: Path) -> None:
    names = {PurePosixPath(name) for name in zipfile.ZipFile(wheel).namelist()}
    expected = set()
    for tree, installed_as in PACKAGE_ROOTS.items():
        for path in (REPO / tree).rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                expected.add(PurePosixPath(installed_as, *path.relative_to(REPO / tree).parts))
    missing = sorted(str(name) for name in expected - names)
    assert not missing, f"not in the wheel (list their packages in pyproject.toml): {missing}"


def test_the_installed_command_lists_and_loads_the_shipped_profiles(installed: tuple[Path, Path, dict[str, str]]) \
        -> None:
    otprobe, workdir, env = installed
    where = run(otprobe.with_name("python"), "-c", "import otprobe; print(otprobe.__file__)", cwd=workdir, env=env)
    assert Path(where.stdout.strip()).is_relative_to(otprobe.parent.parent), "the checkout was imported"
    listed = run(otprobe, "profiles", "list", cwd=workdir, env=env).stdout
    assert SHIPPED_PROFILES == ["default", "inventory-refresh", "lab", "maintenance-window"]
    assert all(f"│ {name} " in listed for name in SHIPPED_PROFILES), listed
    plan = json.loads(run(otprobe, "plan", "127.0.1.1", "--profile", "lab", "--format", "json", cwd=workdir,
                          env=env).stdout)
    assert plan["devices"] == 1 and plan["total_packets"] > 0
    version = run(otprobe, "--version", cwd=workdir, env=env).stdout
    assert version.startswith("otprobe ") and version.split()[1][0].isdigit()


def test_the_installed_demo_scans_the_bundled_plant(installed: tuple[Path, Path, dict[str, str]]) -> None:
    otprobe, workdir, env = installed
    demo = run(otprobe, "demo", "--keep", workdir / "demo", cwd=workdir, env=env)
    output = demo.stdout + demo.stderr
    # the bundled plant answered: its devices are in the inventory, and the scan and its audit log are whole
    summary = re.search(r"complete; (\d+) packets .* identified (\d+)", output)
    assert summary and int(summary[1]) > 0 and int(summary[2]) > 0, output
    assert "127.0.1.10" in output and "hash chain verified" in output
    with closing(sqlite3.connect(workdir / "demo" / "inventory.db")) as db:
        # one asset per identified device; a device identified over two protocols is one asset
        assert 0 < db.execute("SELECT count(*) FROM assets").fetchone()[0] <= int(summary[2])
