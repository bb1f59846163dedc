"""How honest the scan's progress is: the ETA sampled every second against the real end, and the plan's expected time
against the measured one, on the demo plant (lab profile) and the 64-device plant of tests/plantgen.py.

Each scan runs through ScanRun as the CLI does; once a second the bench reads `ScanRun.progress()` (what the
progress bar shows) and records elapsed + ETA, the end that ETA predicts. After the scan it prints, per plant, the
median and the largest error of those predictions against the real end (as a share of the scan's length), the
ETA at a quarter, half and three quarters of the scan against the time really left, and the plan's expected
seconds (every address a device: --expect-devices = the device count) against the measured time.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_eta.py'
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import table
from plantgen import plant64

from otprobe.inventory import SqliteStore
from otprobe.profile import Profile, load_profile
from otprobe.scan import ScanRun, prepare
from simulators.plant import bundled_plant, load_plant
from simulators.process import PlantProcess


async def sampled(profile: Profile, targets: list[str]) -> tuple[float, float, list[tuple[float, float]]]:
    """The scan's length, the plan's expected seconds, and (elapsed, eta) once a second."""
    with tempfile.TemporaryDirectory(prefix="otprobe-eta-") as workdir:
        now = datetime.now(UTC)
        prepared = prepare(profile, profile.name, targets, now=now, expect_devices=len(targets))
        store = SqliteStore(Path(workdir) / "inventory.db")
        try:
            run = ScanRun(prepared, store, Path(workdir) / "audit.jsonl", now=now)
            started = time.monotonic()
            task = asyncio.create_task(run.run())
            samples = []
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                samples.append((time.monotonic() - started, run.progress().eta_s))
            await task
            return time.monotonic() - started, prepared.plan.expected_seconds, samples[:-1]
        finally:
            store.close()


def row(name: str, length: float, expected: float, samples: list[tuple[float, float]]) -> list[object]:
    errors = [abs(elapsed + eta - length) / length for elapsed, eta in samples]

    def at(share: float) -> str:
        elapsed, eta = min(samples, key=lambda s: abs(s[0] - share * length))
        return f"{eta:.0f} / {length - elapsed:.0f}"

    return [name, f"{length:.1f}", f"{expected:.1f} ({expected / length:.2f}x)", len(samples),
            f"{statistics.median(errors):.0%}", f"{max(errors):.0%}", at(0.25), at(0.5), at(0.75)]


async def main() -> None:
    rows = []
    demo = bundled_plant("demo")
    with PlantProcess(demo):
        targets = [device.address for device in load_plant(demo).devices]
        rows.append(row("demo plant (lab)", *await sampled(load_profile("lab"), targets)))
    scenario = plant64()
    with PlantProcess(scenario.plant):
        rows.append(row("64 devices, two classes", *await sampled(scenario.profile, scenario.targets)))
    table(("plant", "scan (s)", "plan expected (s, x scan)", "samples", "median ETA error", "largest ETA error",
           "ETA / really left at 25 %", "at 50 %", "at 75 %"), rows)


if __name__ == "__main__":
    asyncio.run(main())
