"""A /24 holding 15 devices and 239 empty addresses, scanned with a shipped profile: how much the empty ones cost.

The 15 simulated devices (5 Modbus, 5 S7, 5 EtherNet/IP, tests/plantgen.py identities) sit on 127.0.88.10-24; every
other address of 127.0.88.0/24 is empty, in one of two ways:

* `rst`: nothing listens, so the kernel answers a SYN with RST and a datagram with ICMP port unreachable;
* `drop`: every probe's TCP port has a listener whose accept queue is full and which never accepts, so SYNs are
  dropped (the loopback way to be a host behind a DROP firewall, no root-only iptables), and every UDP port has a
  socket that never answers.

For each profile it first scans the 15 devices alone (their own session time), then the whole /24 for each kind,
and prints the packets the scan sent, the least time the global cap allows for them (and the least time all the
caps allow: the class aggregate binds first in the shipped profiles), the wall time and the ratio
wall / (least + the devices' own time); and the plan's expected time (--expect-devices 15, --expect-empty as the
kind) against the wall time.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_empty24.py default maintenance-window'

Run it in a network namespace (it binds many 127.0.88.x sockets). A full run of the three shipped profiles takes
about 30 minutes; each profile is an argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from common import table
from emptyhosts import dropping
from plantgen import PORTS, addresses, group, plant

from otprobe.inventory import SqliteStore
from otprobe.profile import load_profile
from otprobe.scan import Prepared, ScanOutcome, ScanRun, prepare
from simulators.process import PlantProcess

BLOCK = "127.0.88"
DEVICES = (group(88, 5, device_class="plc", protocols={"modbus": {}})
           + group(88, 5, device_class="plc", protocols={"s7": {}}, first_host=15)
           + group(88, 5, device_class="plc", protocols={"enip": {}}, first_host=20))
LIVE = addresses(DEVICES)
EVERY = [f"{BLOCK}.{host}" for host in range(1, 255)]
EMPTY = [ip for ip in EVERY if ip not in LIVE]
SCOPE = [f"{BLOCK}.0/24"]


async def run_scan(profile_name: str, targets: Sequence[str], expect: int,
                   silent: float = 0.0) -> tuple[Prepared, ScanOutcome, float]:
    profile = load_profile(profile_name)
    with tempfile.TemporaryDirectory(prefix="otprobe-empty24-") as workdir:
        now = datetime.now(UTC)
        prepared = prepare(profile, profile_name, targets, now=now, check_window=False, scope_include=SCOPE,
                           ports={"modbus": PORTS["modbus"], "s7": PORTS["s7"]}, expect_devices=expect,
                           expect_silent=silent)
        store = SqliteStore(Path(workdir) / "inventory.db")
        started = time.monotonic()
        try:
            outcome = await ScanRun(prepared, store, Path(workdir) / "audit.jsonl", now=now).run()
        finally:
            store.close()
        return prepared, outcome, time.monotonic() - started


def ports(prepared: Prepared) -> tuple[list[int], list[int]]:
    tcp = sorted({p.port for p in prepared.probes if "tcp" in p.transports})
    udp = sorted({p.port for p in prepared.probes if "udp" in p.transports})
    return tcp, udp


async def main(profiles: Sequence[str]) -> None:
    rows = []
    with PlantProcess(plant("empty24", DEVICES)):
        for name in profiles:
            first, alone, own_s = await run_scan(name, LIVE, len(LIVE))
            identified = len({o.target for o in alone.result.observations if o.identity is not None})
            for kind in ("rst", "drop"):
                with dropping(EMPTY, *ports(first)) if kind == "drop" else contextlib.nullcontext():
                    prepared, outcome, wall = await run_scan(name, EVERY, len(LIVE), 1.0 if kind == "drop" else 0.0)
                profile = prepared.profile
                sent = outcome.result.packets_sent
                least_global = (sent - 1) / profile.global_pps
                # every address of the /24 is unassigned: the unknown class's aggregate is the class cap that applies
                class_pps = profile.limits("unknown").class_pps or profile.global_pps
                least_caps = max(least_global, (sent - 1) / class_pps)
                plan = prepared.plan
                rows.append([
                    name, kind, f"{identified}/15", sent, f"{least_global:.1f}", f"{least_caps:.1f}", f"{own_s:.1f}",
                    f"{wall:.1f}", f"{wall / (least_global + own_s):.2f}", f"{wall / (least_caps + own_s):.2f}",
                    f"{plan.expected_seconds:.1f} ({plan.expected_seconds / wall:.2f}x)", len(outcome.result.absent),
                ])
                print(rows[-1], flush=True)
    table(("profile", "empty kind", "devices identified (alone)", "packets sent", "least, global cap (s)",
           "least, all caps (s)", "15 devices alone (s)", "wall (s)", "wall / (least global + alone)",
           "wall / (least caps + alone)", "plan expected (s, x wall)", "absent"), rows)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["default", "maintenance-window", "inventory-refresh"]))
