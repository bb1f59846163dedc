"""Figure 6: pacing at the receiver while the machine is busy with N CPU-bound processes (N = 0, 2, 4, 8).

For each N, the demo plant (simulators/plants/demo.yaml, `lab` profile), the one-class and the two-class 64-device
plants of tests/plantgen.py are started in one child process (simulators.process) and scanned together from this
one, through `otprobe.scan` (prepare, ScanRun: the CLI's path), while N processes spin `while True: pass`.

Packet times come from the kernel when tcpdump is installed and may capture on `lo` (`make bench` installs it when
run as root with apt-get): every segment or datagram the scanner sends to a plant device's port, counted as the
devices count them (a SYN, a segment carrying request bytes, a FIN, a UDP datagram), on tcpdump's wall-clock
stamps moved onto time.monotonic(). Otherwise they are the devices' own stamps, taken when the child reads each
packet. The first line printed says which.

Per scenario it prints the busiest 1 s and 10 s windows of any device, of each class with a class_pps and of all
devices, each against its cap ceil(pps*W + burst - 1); the makespan (last packet at any device, from before
prepare()) against the least time the caps allow (plantgen.least_seconds); and the utilisation, achieved rate
(n - 1) / span over cap. About 25 s per N.

    .venv/bin/python bench/bench_stress.py
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from common import table
from lo_capture import Capture as Pcap
from lo_capture import can_capture, frames, tcpdump
from plantgen import (
    Scanned,
    Scenario,
    achieved_pps,
    busiest,
    least_seconds,
    plant64,
    plant64_one_class,
    run_together,
    window_cap,
)

from otprobe.profile import load_profile
from simulators.plant import load_plant

LOADS = (0, 2, 4, 8)
WINDOWS_S = (1.0, 10.0)
DEMO = Path(__file__).resolve().parents[1] / "simulators" / "plants" / "demo.yaml"

Times = dict[str, list[float]]  # packet times by device address


def demo() -> Scenario:
    """The demo plant scanned as `otprobe demo` scans it: every device, `lab` profile (the safety ones excluded)."""
    return Scenario("demo plant, lab profile", str(DEMO), load_profile("lab"),
                    [device.address for device in load_plant(DEMO).devices])


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


# -- kernel timestamps --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """tcpdump on lo capturing the scanner's packets to the plants' devices."""

    pcap: Pcap
    ports: dict[str, set[int]]  # device address -> its listening ports


@contextlib.contextmanager
def capture(scenarios: Sequence[Scenario], workdir: Path) -> Iterator[Capture]:
    ports: dict[str, set[int]] = {}
    for scenario in scenarios:
        for device in load_plant(scenario.plant).devices:
            ports[device.address] = {config.port for config in device.protocols.values()}
    nets = sorted({address.rsplit(".", 1)[0] + ".0/24" for address in ports})
    bpf = "(tcp or udp) and (" + " or ".join(f"dst net {net}" for net in nets) + ")"
    with tcpdump(workdir / "scan.pcap", bpf) as pcap:
        yield Capture(pcap, ports)


def captured_times(cap: Capture) -> Times:
    """Scanner-to-device packets, counted as the devices count them (a SYN, a segment with bytes, a FIN, a
    datagram), by device."""
    times: Times = {address: [] for address in cap.ports}
    for frame in frames(cap.pcap):
        if frame.dport in cap.ports.get(frame.dst, ()):  # not a device's reply, nor traffic to another port
            times[frame.dst] += [frame.at] * len(frame.kinds)
    return {address: sorted(stamps) for address, stamps in times.items()}


# -- measures -----------------------------------------------------------------------------------------------------


@dataclass
class Level:
    label: str
    times: list[float]
    pps: float
    burst: int = 1


def worst_device(scanned: Scanned, times: Times) -> Level:
    """The device whose busiest window comes closest to (or goes furthest over) its own cap."""
    profile = scanned.prepared.profile
    devices = []
    for target in scanned.prepared.targets:
        limits = profile.limits(target.device_class)
        level = Level(f"device {target.ip} ({target.device_class})", times[target.ip], limits.pps, limits.burst)
        devices.append((max(busiest(level.times, w) / window_cap(level.pps, level.burst, w) for w in WINDOWS_S), level))
    return max(devices, key=lambda pair: pair[0])[1]


def shared_levels(scanned: Scanned, times: Times) -> list[Level]:
    """Each class with a class_pps (the union of its devices' packets), and all devices together."""
    profile = scanned.prepared.profile
    targets = scanned.prepared.targets
    found = []
    for device_class in sorted({t.device_class for t in targets}):
        class_pps = profile.limits(device_class).class_pps
        if class_pps:
            union = sorted(t for target in targets if target.device_class == device_class for t in times[target.ip])
            found.append(Level(f"class {device_class}", union, class_pps))
    found.append(Level("global", sorted(t for stamps in times.values() for t in stamps), profile.global_pps))
    return found


def utilisation(times: Sequence[float], pps: float) -> str:
    return f"{achieved_pps(times) / pps:.0%}" if len(times) >= 2 else "-"


def over_cap(scanned: Scanned, times: Times) -> tuple[int, int]:
    """(windows over their cap, windows checked): every device, every class with class_pps, the global cap."""
    profile = scanned.prepared.profile
    checks = [(times[t.ip], profile.limits(t.device_class).pps, profile.limits(t.device_class).burst)
              for t in scanned.prepared.targets]
    checks += [(level.times, level.pps, level.burst) for level in shared_levels(scanned, times)]
    results = [busiest(stamps, w) > window_cap(pps, burst, w) for stamps, pps, burst in checks for w in WINDOWS_S]
    return sum(results), len(results)


async def measure(load: int, scenarios: Sequence[Scenario], kernel: bool) -> tuple[list[list[object]], ...]:
    with tempfile.TemporaryDirectory(prefix="bench-stress-") as workdir, cpu_load(load):
        capturing = capture(scenarios, Path(workdir)) if kernel else contextlib.nullcontext()
        with capturing as running:
            scans = await run_together(scenarios)
        captured = captured_times(running) if running is not None else {}
    summary, detail = [], []
    for scenario, scanned in zip(scenarios, scans, strict=True):
        received = {ip: recorder.packet_times() for ip, recorder in scanned.recorders.items()}
        times = {ip: captured.get(ip, []) for ip in received} if kernel else received
        stamps = sorted(t for device in times.values() for t in device)
        least = least_seconds(scanned)
        makespan = stamps[-1] - scanned.started
        over, checked = over_cap(scanned, times)
        # beside kernel stamps, what the devices' own stamps say: a difference is the receiver stamping late
        over_at_devices = f" ({over_cap(scanned, received)[0]})" if kernel else ""
        summary.append([load, scenario.name, f"{len(stamps)} ({sum(map(len, received.values()))})",
                        f"{over}{over_at_devices} of {checked}", f"{least:.2f}",
                        f"{makespan:.2f} ({makespan / least:.3f}x)",
                        utilisation(stamps, scanned.prepared.profile.global_pps)])
        for level in [worst_device(scanned, times), *shared_levels(scanned, times)]:
            windows = [f"{busiest(level.times, w)} ({window_cap(level.pps, level.burst, w)})" for w in WINDOWS_S]
            detail.append([load, scenario.name, level.label, f"{level.pps:g}", *windows,
                           utilisation(level.times, level.pps)])
        device_use = [achieved_pps(times[t.ip]) / scanned.prepared.profile.limits(t.device_class).pps
                      for t in scanned.prepared.targets if len(times[t.ip]) >= 2]
        detail.append([load, scenario.name, "every device (mean)", "-", "-", "-", f"{mean(device_use):.0%}"])
    return summary, detail


async def main() -> None:
    kernel = can_capture()
    print("packet times:", "tcpdump on lo (kernel stamps)" if kernel else "the simulated devices' own stamps "
          "(tcpdump is not installed or cannot capture on lo)")
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        print(f"load average before: {' '.join(loadavg.read().split()[:3])}, {len(LOADS)} runs\n", flush=True)
    summary, detail = [], []
    for load in LOADS:
        rows = await measure(load, [demo(), plant64_one_class(), plant64()], kernel)
        summary += rows[0]
        detail += rows[1]
    table(("CPU-bound processes", "scenario", "packets (devices' count)", "windows over cap (devices' stamps)",
           "least time (s)",
           "makespan (s, x least)", "global utilisation"), summary)
    table(("CPU-bound processes", "scenario", "cap", "pps", "busiest 1 s (cap)", "busiest 10 s (cap)",
           "utilisation"), detail)


if __name__ == "__main__":
    asyncio.run(main())
