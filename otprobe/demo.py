"""`otprobe demo`: the bundled simulated plant, scanned with the `lab` profile, end to end.

Starts the demo plant in-process on 127.0.0.0/8, scans every device of it (the safety controller
included, so its exclusion shows), writes a temporary inventory and audit log, and returns what the
devices themselves recorded, so the pacing figures shown are measured at the receiver.
"""

from __future__ import annotations

import math
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

from otprobe.audit import verify
from otprobe.inventory import AssetRecord, SqliteStore
from otprobe.profile import load_profile
from otprobe.scan import Prepared, ScanOutcome, ScanRun, prepare
from simulators.plant import bundled_plant, running_plant

DEMO_PLANT = bundled_plant("demo")


def max_in_window(times: Sequence[float], window_s: float = 1.0) -> int:
    """Most packets in any window of `window_s` seconds (half-open), from sorted timestamps."""
    return max((bisect_right(times, t + window_s - 1e-9) - i for i, t in enumerate(times)), default=0)


@dataclass
class DeviceFigures:
    name: str
    address: str
    device_class: str
    packets: int
    max_per_s: int
    cap_per_s: int
    max_connections: int
    violations: int


@dataclass
class DemoResult:
    outcome: ScanOutcome
    prepared: Prepared
    assets: list[AssetRecord]
    figures: list[DeviceFigures]
    audit_ok: bool
    audit_records: int
    workdir: Path


async def run_demo(workdir: Path | None = None, on_prepared: Callable[[Prepared], None] | None = None) -> DemoResult:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="otprobe-demo-"))
    profile = load_profile("lab")
    async with running_plant(DEMO_PLANT) as plant:
        now = datetime.now(UTC)
        prepared = prepare(profile, "lab", [device.address for device in plant], now=now)
        if on_prepared is not None:
            on_prepared(prepared)
        store = SqliteStore(workdir / "inventory.db")
        try:
            outcome = await ScanRun(prepared, store, workdir / "audit.jsonl", now=now).run()
            assets = store.assets()
        finally:
            store.close()
        figures = []
        scope = profile.target_scope()
        for device in plant:
            limits = profile.limits(scope.class_of_int(int(IPv4Address(device.address))))
            recorder = device.recorder
            figures.append(DeviceFigures(
                device.name, device.address, device.device_class, recorder.packet_count(),
                max_in_window(recorder.packet_times()), math.ceil(limits.pps + limits.burst - 1),
                recorder.max_concurrent, len(recorder.violations()),
            ))
    check = verify(workdir / "audit.jsonl")
    return DemoResult(outcome, prepared, assets, figures, check.ok, check.records, workdir)
