"""Figures 1 and 2: caps and achieved rates at the receiver, per class, from real scans of simulated devices.

Runs the `rates` scenario (a class per rate: 0.2, 1, 2, 10 pps and 1 pps with burst 2, Modbus identity sessions)
and the `shared_caps` scenario (20 devices under class_pps 5 and 8 more under global_pps 8) of tests/plantgen.py
together, then prints for each class the busiest 1 s and 10 s windows at any one device against the cap
ceil(pps*W + burst - 1), the busiest windows over the union of a class and of all devices against class_pps and
global_pps, and the slowest device's achieved rate (n - 1) / span against its cap. About 17 s.

    .venv/bin/python bench/bench_caps.py
"""

from __future__ import annotations

import asyncio

from common import table
from plantgen import Scanned, achieved_pps, busiest, rates, run_together, shared_caps, window_cap

HEADERS = ("scenario", "class", "devices", "pps / burst", "packets per device", "busiest 1 s (cap)",
           "busiest 10 s (cap)", "slowest device's rate (% of cap)")


def per_class(name: str, scanned: Scanned) -> list[list[object]]:
    profile = scanned.prepared.profile
    rows = []
    classes = {t.device_class for t in scanned.prepared.targets}
    for device_class in sorted(classes, key=lambda c: (profile.limits(c).pps, profile.limits(c).burst)):
        limits = profile.limits(device_class)
        times = [scanned.recorders[t.ip].packet_times() for t in scanned.prepared.targets
                 if t.device_class == device_class]
        slowest = min(achieved_pps(t) for t in times)
        rows.append([
            name, device_class, len(times), f"{limits.pps:g} / {limits.burst}",
            "-".join(sorted({str(len(t)) for t in times})),
            f"{max(busiest(t, 1.0) for t in times)} ({window_cap(limits.pps, limits.burst, 1.0)})",
            f"{max(busiest(t, 10.0) for t in times)} ({window_cap(limits.pps, limits.burst, 10.0)})",
            f"{slowest:.3f} ({100 * slowest / limits.pps:.1f} %)",
        ])
    return rows


def aggregates(scanned: Scanned) -> list[list[object]]:
    profile = scanned.prepared.profile
    groups = [(f"class {c} (class_pps)", [t.ip for t in scanned.prepared.targets if t.device_class == c],
               profile.limits(c).class_pps) for c in profile.classes if profile.limits(c).class_pps]
    groups.append(("all devices (global_pps)", list(scanned.recorders), profile.global_pps))
    rows = []
    for label, ips, pps in groups:
        times = scanned.packet_times(ips)
        rows.append([label, len(ips), f"{pps:g}", len(times), f"{busiest(times, 1.0)} ({window_cap(pps, 1, 1.0)})",
                     f"{busiest(times, 10.0)} ({window_cap(pps, 1, 10.0)})"])
    return rows


async def main() -> None:
    scanned_rates, scanned_shared = await run_together([rates(), shared_caps()])
    print("Per device (every device of the class; caps are ceil(pps*W + burst - 1))\n")
    table(HEADERS, per_class("rates", scanned_rates) + per_class("shared caps", scanned_shared))
    print("(In shared caps the class and global caps bind, so devices there run below their own cap.)\n")
    print("Shared caps, over the union of the devices' packets (scenario shared caps)\n")
    table(("union", "devices", "cap pps", "packets", "busiest 1 s (cap)", "busiest 10 s (cap)"),
          aggregates(scanned_shared))


if __name__ == "__main__":
    asyncio.run(main())
