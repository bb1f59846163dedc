"""Hostile profile files: an alias bomb, deep nesting, a recursive alias, an oversized file, a device or a FIFO
given as the profile. Each is one `file:line` error (exit 2) within a second and a few MiB, never a traceback,
a hang or a MemoryError.

The bounds are measured in a child process (time and tracemalloc peak around `load_profile`) that also runs under
an address-space limit and a timeout, so a regression fails the test instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.profile import MAX_PROFILE_BYTES, load_profile

BAD = Path(__file__).parent / "profiles_bad"
MEMORY_LIMIT = 1 << 30

# timed without tracemalloc (which slows Python several times over), then loaded again to trace its peak memory
MEASURE = """
import json, sys, time, tracemalloc
from otprobe.profile import ProfileError, load_profile

def load():
    try:
        load_profile(sys.argv[1])
    except ProfileError as exc:
        return str(exc)

started = time.perf_counter()
error = load()
seconds = time.perf_counter() - started
tracemalloc.start()
load()
print(json.dumps({"s": seconds, "peak": tracemalloc.get_traced_memory()[1], "error": error}))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def measured_load(path: Path) -> dict[str, object]:
    """`load_profile(path)` in a child: its error, seconds and peak traced memory."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=30, preexec_fn=_limit_memory)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["profiles", "check", str(path)], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stderr


def deep_flow(tmp_path: Path) -> Path:
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nscope: " + "[" * 20_000 + "]" * 20_000 + "\n")
    return path


def deep_block(tmp_path: Path) -> Path:
    path = tmp_path / "deep_block.yaml"
    path.write_text("name: deep\nscope:\n" + "".join(" " * (2 * i + 2) + f"k{i}:\n" for i in range(200)))
    return path


def recursive(tmp_path: Path) -> Path:
    path = tmp_path / "recursive.yaml"
    path.write_text("name: loop\nclasses: &loop\n  unknown: *loop\n")
    return path


def wide(tmp_path: Path) -> Path:
    path = tmp_path / "wide.yaml"
    path.write_text("name: wide\nassign: [" + "1, " * 20_000 + "]\n")
    return path


HOSTILE = {
    "billion laughs": (lambda tmp_path: BAD / "billion_laughs.yaml", 7, "more than 10,000 YAML values"),
    "20,000 levels in flow style": (deep_flow, 2, "nested deeper than 32 levels"),
    "200 levels in block style": (deep_block, 33, "nested deeper than 32 levels"),
    "an alias inside its own anchor": (recursive, 3, "recursive value"),
    "20,000 values in one list": (wide, 2, "more than 10,000 YAML values"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_profile_is_one_file_line_error_within_a_second_and_a_few_mib(tmp_path: Path, case: str) -> None:
    make, line, words = HOSTILE[case]
    path = make(tmp_path)
    figures = measured_load(path)
    assert figures["error"] is not None and words in str(figures["error"])
    assert str(figures["error"]).startswith(f"{path}:{line} "), figures["error"]
    assert float(figures["s"]) < 1.0, figures  # type: ignore[arg-type]
    assert int(figures["peak"]) < 100 * 2**20, figures  # type: ignore[call-overload]
    code, stderr = check(path)
    assert code == 2
    assert stderr.splitlines() == [f"otprobe: error: {figures['error']}"]


def test_an_integer_too_long_to_convert_is_a_line_error(tmp_path: Path) -> None:
    path = tmp_path / "digits.yaml"
    path.write_text("name: digits\nretries: " + "9" * 5000 + "\n")
    code, stderr = check(path)
    assert code == 2
    assert stderr.startswith(f"otprobe: error: {path}:2 ") and "4300 digits" in stderr


def test_a_profile_may_still_use_a_few_anchors_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text("name: anchors\nscope: {include: [127.0.0.0/8]}\n"
                    "classes:\n  plc: &slow {pps: 1, burst: 1, max_session_s: 20}\n  hmi: *slow\n  unknown: *slow\n")
    profile = load_profile(path)
    assert profile.classes["hmi"] == profile.classes["unknown"] == profile.classes["plc"]
    assert profile.classes["plc"].pps == 1


def test_a_profile_above_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "# padding\n" * (MAX_PROFILE_BYTES // 10))
    code, stderr = check(path)
    assert code == 2
    assert stderr == f"otprobe: error: {path}: cannot read profile: larger than the limit of 64 KiB\n"


def test_a_device_or_a_fifo_given_as_profile_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "profile.yaml"
    os.mkfifo(fifo)
    for path, kind in ((Path("/dev/zero"), "a character device"), (fifo, "a FIFO")):
        done = subprocess.run([sys.executable, "-m", "otprobe", "profiles", "check", str(path)], cwd=REPO,
                              capture_output=True, text=True, timeout=20, preexec_fn=_limit_memory,
                              env={**os.environ, "NO_COLOR": "1"})
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"otprobe: error: {path}: cannot read profile: {kind}, not a regular file\n"


def test_a_control_character_is_a_line_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "control.yaml"
    path.write_text("name: x\nretries: 1\x1f\n")
    code, stderr = check(path)
    assert code == 2
    assert stderr == f"otprobe: error: {path}:2 YAML error: special characters are not allowed (U+001F)\n"
