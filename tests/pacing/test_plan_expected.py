"""The plan's expected time against the scheduler on virtual time: scripted devices that answer in exactly their
probe's usual exchange, so the model's packets are the real ones and only its timing is on trial."""

from __future__ import annotations

from dataclasses import replace

import pytest
import vtime
from fakes import ScriptedProbe, Wire

from otprobe.model import Target
from otprobe.pacing import ClassLimits, ScanConfig, Scheduler, plan_scan
from otprobe.probes import names, probe_class
from otprobe.profile import scan_config

PLC = ClassLimits(pps=2.0, burst=1, class_pps=None, connect_gap_s=1.0, max_session_s=30.0)
HMI = replace(PLC, pps=0.2, max_session_s=60.0)  # one slow device: a 10 s session of its own
UNKNOWN = ClassLimits(pps=1.0, burst=1, class_pps=None, connect_gap_s=1.0, max_session_s=10.0)
BASE = replace(scan_config(), max_devices_in_flight=64, classes={"plc": PLC, "hmi": HMI, "unknown": UNKNOWN})


class Usual(ScriptedProbe):
    """Connect, read, close: its usual exchange is its whole one."""

    def typical_packets(self) -> int:
        return self.max_packets()


def plant() -> list[Target]:
    return [Target(f"127.0.1.{i + 1}", "plc") for i in range(40)] + [Target("127.0.2.1", "hmi")]


def planned_and_real(config: ScanConfig) -> tuple[float, float]:
    devices, wire = plant(), Wire()
    probes = [Usual(wire)]
    plan = plan_scan(devices, probes, config, expect_devices=len(devices))
    result = vtime.run(Scheduler(devices, probes, config).run())
    assert len(wire.packets) == plan.expected_packets == 3 * len(devices)
    return plan.expected_seconds, result.elapsed_s


@pytest.mark.parametrize("config", [
    replace(BASE, global_pps=8.0),  # the global cap binds
    replace(BASE, global_pps=100.0, classes={**BASE.classes, "plc": replace(PLC, class_pps=8.0)}),  # the class cap
], ids=["global cap", "class cap"])
def test_a_binding_cap_and_a_slow_device_of_another_class_are_not_added_up(config: ScanConfig) -> None:
    # 40 PLCs need 15 s of the 8 pps cap; the HMI's own 10 s session runs beside them, not after them (a model that
    # added the slowest session to the cap's time said 25 s)
    expected, real = planned_and_real(config)
    assert 15.0 < real < 17.0
    assert expected == pytest.approx(real, rel=0.15)


def test_a_device_session_bounds_the_scan_when_the_caps_are_loose() -> None:
    expected, real = planned_and_real(replace(BASE, global_pps=100.0))
    assert expected == pytest.approx(real, rel=0.15)
    assert expected >= 10.0  # never shorter than the HMI's own session


def test_every_probe_usually_costs_at_most_its_worst_case_and_at_least_one_packet() -> None:
    for name in names():
        probe = probe_class(name)({"communities": ["public"]} if name == "snmp" else None)
        assert 1 <= probe.typical_packets() <= probe.max_packets(), name
