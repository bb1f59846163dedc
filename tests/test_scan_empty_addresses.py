"""Empty addresses at the receiver: what refusing and dropping hosts really get from a scan (tcpdump on lo), that
per-device caps and connection gaps hold for them, and that the breaker still trips a device that answered and went
silent while a host that never answered is absent, not tripped.

127.0.89.0/24: a Modbus device at .10, a silent device (accepts, never replies) at .11, refusing hosts at .30-.33
(nothing listens) and dropping hosts at .40-.43 (tests/emptyhosts.py). Connect timeouts stay under the kernel's
first SYN retransmission (1 s), so every SYN counted is one the scanner asked for.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from emptyhosts import capture, dropping, received
from lo_capture import can_capture
from plantgen import PORTS, group, plant

from otprobe.inventory import SqliteStore
from otprobe.model import Status
from otprobe.probes import names
from otprobe.profile import parse_profile
from otprobe.scan import ScanRun, prepare
from simulators.plant import running_plant

pytestmark = pytest.mark.skipif(not can_capture(), reason="needs tcpdump with the right to capture on lo")

NET = "127.0.89.0/24"
LIVE = group(89, 1, device_class="unknown", protocols={"modbus": {}})
SILENT = group(89, 1, device_class="unknown", protocols={"modbus": {}, "s7": {}}, fault="silent", first_host=11)
REFUSING = [f"127.0.89.{host}" for host in range(30, 34)]
DROPPING = [f"127.0.89.{host}" for host in range(40, 44)]
BACNET = 47808
PPS, GAP = 2.0, 1.0
PROFILE = {
    "name": "empty", "scope": {"include": [NET]}, "global_pps": 50,
    "classes": {"unknown": {"pps": PPS, "connect_gap_s": GAP, "max_session_s": 20}},
    "protocols": {**{name: {"enabled": False} for name in names()},
                  "modbus": {"port": PORTS["modbus"]}, "s7": {"port": PORTS["s7"]}, "bacnet": {"port": BACNET}},
    # connect_s over 1 s: the kernel would send the SYN again 1 s later on its own, over the cap and inside the gap
    "timeouts": {"connect_s": 2.0, "response_s": 0.8}, "retries": 1, "breaker": {"failures": 2},
    "max_devices_in_flight": 1, "max_addresses_in_flight": 8,
}


async def test_refusing_and_dropping_hosts_get_the_fewest_packets_paced_as_devices(tmp_path: Path) -> None:
    targets = [LIVE[0]["address"], SILENT[0]["address"], *REFUSING, *DROPPING]
    profile = parse_profile(yaml.safe_dump(PROFILE), "empty.yaml")
    async with running_plant(plant("empty", LIVE, SILENT)):
        with dropping(DROPPING, [PORTS["modbus"], PORTS["s7"]], [BACNET]), \
                capture(NET, tmp_path / "scan.pcap") as cap, tempfile.TemporaryDirectory() as work:
            now = datetime.now(UTC)
            prepared = prepare(profile, "empty", targets, now=now)
            store = SqliteStore(Path(work) / "inventory.db")
            try:
                outcome = await ScanRun(prepared, store, Path(work) / "audit.jsonl", now=now).run()
            finally:
                store.close()
    got = received(cap)
    result = outcome.result
    assert outcome.status == "complete"
    assert sorted(result.absent) == DROPPING  # never answered: absent, not tripped
    assert result.tripped == [SILENT[0]["address"]]  # answered (accepted), then silent twice: the breaker
    for ip in REFUSING:  # one SYN per TCP probe, one datagram for BACnet, nothing retried
        assert sorted(p.kind for p in got[ip]) == ["syn", "syn", "udp"], ip
    for ip in DROPPING:  # the first connection attempt and its retry, then BACnet's one datagram, nothing else
        assert [p.kind for p in got[ip]] == ["syn", "syn", "udp"], (ip, got[ip])
        statuses = {o.protocol: o.status for o in result.observations if o.target == ip}
        assert statuses == {"s7": Status.TIMEOUT, "modbus": Status.TRIPPED, "bacnet": Status.TIMEOUT}  # s7 first
    for ip in [*REFUSING, *DROPPING, LIVE[0]["address"], SILENT[0]["address"]]:
        times = [p.at for p in got[ip]]
        # the device cap at the receiver, with the headroom's 2 % for the capture's own jitter
        assert all(b - a >= 0.98 / PPS for a, b in itertools.pairwise(times)), (ip, times)
        window = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert window <= math.ceil(PPS), (ip, times)
        syns = [p.at for p in got[ip] if p.kind == "syn"]
        assert all(b - a >= GAP * 0.98 for a, b in itertools.pairwise(syns)), (ip, syns)
    identified = [o for o in result.observations if o.target == LIVE[0]["address"] and o.identity is not None]
    assert identified
