"""The device packet budget (`max_packets_per_device`) holds where it matters: at the device.

Silent devices (they accept and read, never reply) make every probe time out and every job retry, which is the case
the budget exists for; each device's own recorder counts what reached it. The scheduler's bookkeeping of the same
rule is tested on virtual time in test_scheduler_empty.py.
"""

from __future__ import annotations

import plantgen
from conftest import StartPlant

BLOCK = 95
BUDGET = 16
EVERYTHING = {"modbus": {}, "s7": {}, "enip": {}}


async def test_silent_devices_that_force_every_retry_receive_at_most_the_budget(start_plant: StartPlant) -> None:
    devices = plantgen.group(BLOCK, 3, device_class="silent", protocols=EVERYTHING, fault="silent")
    plant = await start_plant(source=plantgen.plant("budget", devices))
    scan_profile = plantgen.profile(
        {"silent": {"pps": 20, "connect_gap_s": 0}}, {plantgen.cidr(BLOCK): "silent"},
        include=[plantgen.cidr(BLOCK)], protocols=tuple(EVERYTHING), global_pps=100, retries=3,
        breaker={"failures": 10}, max_packets_per_device=BUDGET, timeouts={"connect_s": 0.5, "response_s": 0.2},
    )
    scan = await plantgen.scan_targets(scan_profile, plantgen.addresses(devices))
    worst = sum(probe.max_packets() for probe in scan.prepared.probes) * (3 + 1)
    assert worst > 2 * BUDGET  # without the budget, the retries alone could send far more
    received = {device.address: device.recorder.packet_count() for device in plant}
    assert all(0 < n <= BUDGET for n in received.values()), received
    assert scan.prepared.plan.packets_per_device <= BUDGET  # the plan counts the budget, a true upper bound
    # the budget, not the breaker or the test's timeouts, is what stopped each device
    stopped = {o.target for o in scan.outcome.observations if o.error and "packet budget" in o.error}
    assert stopped == set(received), [(o.target, o.protocol, o.status, o.error) for o in scan.outcome.observations]
    # each result counts every attempt's packets, so per device they add up to what the device received
    recorded = {ip: sum(o.packets_sent for o in scan.outcome.observations if o.target == ip) for ip in received}
    assert recorded == received
