"""Packets per identified device, otprobe against nmap's ICS scripts, counted at the simulated device.

Starts the standard-port plant (simulators/plants/standard.yaml: Modbus/TCP 502, S7 102, EtherNet/IP 44818,
BACnet/IP 47808, SNMP 161 on 127.0.10.x) and, for every protocol of every device:
  * runs otprobe's probe with the `default` profile's options for it (SNMP: community `public` named, since the
    profile leaves SNMP off until one is) and its timeouts, no pacing (pacing changes when packets leave, not how
    many);
  * runs nmap -Pn -n on that port alone (-sT for TCP, -sU for UDP) twice: with no script (the port scan alone),
    then with the protocol's script (port scan + script); the script's share is the difference.
A packet is counted as the device's recorder counts it (simulators/recorder.py): an accepted connection 1, each
request frame or datagram 1, the client's close 1 (FIN, or RST: nmap's port scan resets). TCP acknowledgements
and the device's own replies are not counted, for either tool. "fields" are the identity fields each tool printed
or returned with a value.

Needs root (ports below 1024, and nmap -sU) and nmap; without nmap it says "skipped: nmap missing" and exits 0.
Run it in a network namespace of its own, as every bench here:

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_nmap_cost.py'
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import table

from otprobe.contract import Timeouts
from otprobe.link import Link
from otprobe.model import Identity, Status, Target
from otprobe.probes import probe_class
from otprobe.profile import load_profile
from simulators.plant import PlantStartError, running_plant
from simulators.recorder import Recorder

STANDARD = Path(__file__).resolve().parents[1] / "simulators" / "plants" / "standard.yaml"
UDP = {"bacnet", "snmp"}
SCRIPTS = {  # protocol: nmap scripts, each measured on its own; "+" forces one whatever nmap named the service
    "modbus": ["+modbus-discover"],
    "s7": ["+s7-info"],
    "enip": ["enip-info"],
    "bacnet": ["bacnet-info"],
    "snmp": ["snmp-sysdescr", "snmp-info"],
}
IDENTITY_FIELDS = ("vendor", "model", "product_code", "firmware", "serial", "hardware_version", "asset_type")
_SCRIPT_LINE = re.compile(r"^\|[_ ]\s*([^:|]+?):\s*(\S.*)$")


def packets(recorder: Recorder) -> int:
    """What the device had to handle: connections, their client closes (FIN or RST) and requests."""
    closes = sum(1 for c in recorder.connections if c.close_kind in ("fin", "rst"))
    return len(recorder.connections) + closes + len(recorder.requests)


async def quiet(recorder: Recorder) -> None:
    """Until the device holds no connection and nothing new arrived for 0.3 s."""
    last, since = packets(recorder), time.monotonic()
    while time.monotonic() - since < 0.3 or recorder.open_connections or recorder.held_connections:
        await asyncio.sleep(0.05)
        if packets(recorder) != last:
            last, since = packets(recorder), time.monotonic()


async def counted(recorder: Recorder, action: Any) -> tuple[int, list[str], Any]:
    """Packets the device handled during `action`, the operations among them that the device's allowlist does not
    hold (what a read-only identity tool has no business sending), and the action's result."""
    await quiet(recorder)
    before, flagged = packets(recorder), len(recorder.violations())
    result = await action
    await quiet(recorder)
    return packets(recorder) - before, [r.operation for r in recorder.violations()[flagged:]], result


def identity_fields(identity: Identity | None) -> list[str]:
    return [name for name in IDENTITY_FIELDS if identity is not None and getattr(identity, name)]


async def otprobe_run(protocol: str, ip: str, port: int) -> tuple[Status, Identity | None]:
    profile = load_profile("default")
    options = {**profile.protocol_options(protocol).model_dump(), "port": port}
    if protocol == "snmp":
        options["communities"] = ["public"]
    if protocol == "bacnet":
        options["source_port"] = 0  # nmap's bacnet-info and the probe must not contend for 47808 as a source
    probe = probe_class(protocol)(options)
    target = Target(ip, "unknown")
    timeouts = Timeouts(profile.timeouts.connect_s, profile.timeouts.response_s)
    observation = await probe.run(Link(probe, target, timeouts=timeouts), target)
    return observation.status, observation.identity


async def nmap(protocol: str, ip: str, port: int, script: str | None) -> str:
    args = ["nmap", "-Pn", "-n", "-sU" if protocol in UDP else "-sT", "-p", str(port)]
    if script:
        args += ["--script", script]
    process = await asyncio.create_subprocess_exec(*args, ip, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode:
        raise RuntimeError(f"{' '.join(args)} {ip}: exit {process.returncode}: {err.decode().strip()}")
    return out.decode()


def script_fields(output: str) -> list[str]:
    """The `key: value` lines of the script's output block."""
    return [match[1].strip() for line in output.splitlines() if (match := _SCRIPT_LINE.match(line.strip()))]


async def measure() -> list[list[object]]:
    rows: list[list[object]] = []
    async with running_plant(STANDARD) as plant:
        for device in plant:
            for protocol, port in device.ports.items():
                ip, recorder = device.address, device.recorder
                sent, flagged, (status, identity) = await counted(recorder, otprobe_run(protocol, ip, port))
                if flagged:
                    raise RuntimeError(f"{device.name}: otprobe sent {flagged}, outside the read-only allowlist")
                ours = identity_fields(identity) if status is Status.IDENTIFIED else [str(status)]
                scan_only, scan_flagged, _ = await counted(recorder, nmap(protocol, ip, port, None))
                for script in SCRIPTS[protocol]:
                    total, script_flagged, output = await counted(recorder, nmap(protocol, ip, port, script))
                    theirs = script_fields(output)
                    rows.append([device.name, f"{protocol} {port}", script.lstrip("+"), sent, scan_only,
                                 total - scan_only, total, f"{len(ours)}: {', '.join(ours)}",
                                 f"{len(theirs)}: {', '.join(theirs)}" if theirs else "0 (no output)",
                                 ", ".join(sorted(set(scan_flagged + script_flagged))) or "-"])
    return rows


def main() -> int:
    if shutil.which("nmap") is None:
        print("skipped: nmap missing")
        return 0
    try:
        rows = asyncio.run(measure())
    except PlantStartError as exc:
        print(f"skipped: the standard-port plant cannot start here ({exc}); ports below 1024 need root")
        return 0
    table(["device", "protocol, port", "nmap script", "otprobe packets", "nmap port scan", "nmap script packets",
           "nmap total", "otprobe fields", "nmap fields", "nmap requests off the allowlist"], rows)
    ours = sum(int(row[3]) for row in rows if row[2] != "snmp-info")  # one otprobe run per protocol
    theirs = sum(int(row[6]) for row in rows)
    print(f"otprobe {ours} packets for {len({(r[0], r[1]) for r in rows})} device protocols; nmap {theirs} "
          f"for the same with its {sum(len(s) for s in SCRIPTS.values())} scripts (port scans included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
