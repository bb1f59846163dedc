"""Start-up time of the `otprobe` command against a bare `python -c pass`, on the same machine, in the same minute.

Each command is the installed console script run as a user runs it (from a folder outside the repository, output
to /dev/null), N times in alternation with `python -c pass`, so that a burst of load hits both; the figure is the
median wall time and its ratio to the bare interpreter's. A last run under `-X importtime` names the protocol
libraries each command loads. otprobe's modules are byte-compiled first, as a pip install does: where
PYTHONDONTWRITEBYTECODE is set and the checkout has no `__pycache__`, every run would otherwise compile otprobe's
source again (about 20 ms of `otprobe --help` on the 2-core machine). The load average is printed with the
figures: on a busy machine every run is slower.

    .venv/bin/python bench/bench_startup.py [N]
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import table

import otprobe

RUNS = 21
TARGET_S = 0.35  # `otprobe --help` on the 2-core machine BENCHMARKS.md is measured on
PROTOCOL_LIBRARIES = ("pymodbus", "snap7", "pycomm3")
COMMANDS = (("--help",), ("--version",), ("profiles", "list"), ("plan", "127.0.1.1", "--profile", "lab"))


def wall_time(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def protocol_libraries(script: Path, args: tuple[str, ...], cwd: str, env: dict[str, str]) -> list[str]:
    """The protocol libraries `otprobe ARGS` imports, from the interpreter's own import log."""
    log = subprocess.run([sys.executable, "-X", "importtime", str(script), *args], cwd=cwd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True).stderr
    # lines read "import time: self | cumulative | <indent>module"
    loaded = {line.rpartition("|")[2].strip().partition(".")[0] for line in log.splitlines()}
    return [name for name in PROTOCOL_LIBRARIES if name in loaded]


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    script = Path(sys.executable).with_name("otprobe")
    if not script.is_file():
        print(f"no otprobe script beside {sys.executable}: install the package first (make test does)")
        return 1
    compileall.compile_dir(Path(otprobe.__file__).parent, quiet=1)  # writes even under PYTHONDONTWRITEBYTECODE
    env = {**os.environ, "OTPROBE_DB": os.devnull}
    bare = [sys.executable, "-c", "pass"]
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="otprobe-startup-") as cwd:
        for args in COMMANDS:
            times, bare_times = [], []
            for _ in range(runs):
                bare_times.append(wall_time(bare, cwd, env))
                times.append(wall_time([str(script), *args], cwd, env))
            median, bare_median = statistics.median(times), statistics.median(bare_times)
            libraries = ", ".join(protocol_libraries(script, args, cwd, env)) or "none"
            rows.append((f"otprobe {' '.join(args)}", f"{median:.3f}", f"{bare_median:.3f}",
                         f"{median / bare_median:.1f}", libraries))
    load_after = os.getloadavg()
    print(f"{runs} runs each, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
          f"before {', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}\n")
    table(("command", "median wall s", "python -c pass, s", "ratio", "protocol libraries loaded"), rows)
    help_s = float(rows[0][1])
    print(f"otprobe --help: {help_s:.3f} s, target under {TARGET_S} s: {'met' if help_s < TARGET_S else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
