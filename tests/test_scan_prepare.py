"""The no-network half of a scan: target, profile and deadline checks, and the plan, all without a socket."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from otprobe.errors import ProfileError, ScopeError
from otprobe.inventory import SqliteStore
from otprobe.profile import load_profile, parse_profile, scan_config
from otprobe.scan import ScanRun, build_probes, parse_deadline, prepare

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

LAB = """
name: t
scope: {include: [127.0.0.0/8], exclude: [127.0.9.0/24]}
classes:
  plc: {pps: 1, max_session_s: 10}
  unknown: {pps: 2}
assign: [{cidr: 127.0.1.0/24, class: plc}]
"""


@pytest.fixture
def no_sockets(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a socket was created")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_plan_opens_no_socket_and_bounds_the_scan(no_sockets):
    prepared = prepare(load_profile("lab"), "lab", ["127.0.1.0/24", "127.0.9.10"], now=NOW)
    assert len(prepared.resolution.targets) == 254
    assert list(prepared.resolution.excluded.ips()) == ["127.0.9.10"]
    per_device = sum(p.max_packets() for p in prepared.probes) * (prepared.profile.retries + 1)
    assert prepared.plan.packets_per_device == per_device
    assert prepared.plan.total_packets == 254 * per_device
    assert prepared.plan.min_seconds > 0


def test_target_outside_scope_is_refused_before_any_socket(no_sockets):
    with pytest.raises(ScopeError, match=r"126\.0\.0\.1 .* is outside scope\.include"):
        prepare(load_profile("lab"), "lab", ["127.0.1.10", "126.0.0.1"], now=NOW)  # refused, never contacted


def test_session_limit_shorter_than_a_worst_case_session_is_refused():
    profile = parse_profile(LAB, "t.yaml")
    with pytest.raises(ProfileError, match=r"classes\.plc\.max_session_s: 10 s is shorter than a worst-case s7"):
        prepare(profile, "t.yaml", ["127.0.1.10"], now=NOW)
    # the same class with only a cheap probe fits, and a class no target falls in is not checked
    assert prepare(profile, "t.yaml", ["127.0.2.1"], now=NOW).plan.devices == 1
    assert prepare(profile, "t.yaml", ["127.0.1.10"], now=NOW, protocols=["enip"]).probes[0].name == "enip"


def test_session_check_counts_the_schedulers_headroom():
    # 13 packets at 1 pps: 12 intervals, each 1 + headroom seconds long as the scheduler paces them.
    needed = 12 * (1 + scan_config().headroom)
    tight = parse_profile(LAB.replace("max_session_s: 10", "max_session_s: 12"), "t.yaml")
    with pytest.raises(ProfileError, match=rf"12 s is shorter than a worst-case s7 .*\(13 packets, {needed:.1f} s\)"):
        prepare(tight, "t.yaml", ["127.0.1.10"], now=NOW, protocols=["s7"])
    enough = parse_profile(LAB.replace("max_session_s: 10", f"max_session_s: {needed}"), "t.yaml")
    assert prepare(enough, "t.yaml", ["127.0.1.10"], now=NOW, protocols=["s7"]).plan.devices == 1


def test_every_shipped_profile_fits_its_sessions():
    for name in ("default", "maintenance-window", "inventory-refresh", "lab"):
        profile = load_profile(name)
        prepared = prepare(profile, name, ["127.0.1.10"], now=NOW, check_window=False, scope_include=["127.0.0.0/8"])
        # every probe that needs no site credentials is on (those that do, like SNMP's communities, may be off)
        assert {"s7", "enip", "modbus", "bacnet"} <= {p.name for p in prepared.probes}


def test_probe_selection_and_port_overrides():
    profile = load_profile("lab")
    probes = build_probes(profile, ["modbus"], {"modbus": 1502})
    assert [(p.name, p.port) for p in probes] == [("modbus", 1502)]
    with pytest.raises(KeyError, match="unknown protocol"):
        build_probes(profile, ["profinet"])  # no probe speaks it


def test_deadline_forms():
    assert parse_deadline("90s", NOW) == NOW + timedelta(seconds=90)
    assert parse_deadline("30m", NOW) == NOW + timedelta(minutes=30)
    assert parse_deadline("2h", NOW) == NOW + timedelta(hours=2)
    assert parse_deadline("2026-11-25T14:00:00+00:00", NOW) == NOW + timedelta(hours=2)
    at = parse_deadline("06:00", NOW)
    assert NOW < at <= NOW + timedelta(days=1)
    assert at.astimezone().strftime("%H:%M") == "06:00"
    for bad in ("soon", "25:00", "-5m"):
        with pytest.raises(ValueError):
            parse_deadline(bad, NOW)


def test_deadline_is_the_earlier_of_window_end_and_deadline():
    profile = parse_profile(LAB + "windows: [{days: [wed], start: '11:00', end: '13:00', tz: UTC}]\n", "t.yaml")
    inside = prepare(profile, "t", ["127.0.2.1"], now=NOW, protocols=["enip"])
    assert inside.deadline == inside.window_end == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    earlier = prepare(profile, "t", ["127.0.2.1"], now=NOW, protocols=["enip"], deadline=NOW + timedelta(minutes=5))
    assert earlier.deadline == NOW + timedelta(minutes=5)


async def test_link_rechecks_scope_before_every_operation():
    from otprobe.errors import PolicyViolation
    from otprobe.link import Link
    from otprobe.model import Target
    from otprobe.probes.modbus import ModbusProbe

    prepared = prepare(load_profile("lab"), "lab", ["127.0.1.10"], now=NOW)
    assert prepared.scope.allows("127.0.1.10") and not prepared.scope.allows("127.0.9.10")
    link = Link(ModbusProbe(), Target("127.0.9.10"), in_scope=prepared.scope.allows)
    with pytest.raises(PolicyViolation, match="outside the scan's scope or excluded"):
        async with link.op("connect"):
            raise AssertionError("the operation body must not run")
    assert link.packets_sent == 0


async def test_an_intrusive_operation_is_enabled_for_its_own_protocol_only():
    from otprobe.errors import ProbeContractError
    from otprobe.link import Link
    from otprobe.model import Target
    from otprobe.probes.modbus import ModbusProbe

    reason = '"a reason, written for s7"'
    with pytest.raises(ProfileError, match=r"protocols\.s7\.intrusive\.unit_id_sweep: not an operation of the s7"):
        parse_profile(LAB + f"protocols:\n  s7: {{intrusive: {{unit_id_sweep: {reason}}}}}\n", "t.yaml")
    # and were it enabled for s7 all the same, the link still refuses it for modbus
    link = Link(ModbusProbe(), Target("127.0.1.10"), enabled_intrusive=frozenset({("s7", "unit_id_sweep")}))
    with pytest.raises(ProbeContractError, match=r"modbus\.unit_id_sweep is not enabled"):
        async with link.op("unit_id_sweep"):
            raise AssertionError("the operation body must not run")
    assert link.packets_sent == 0


def test_the_deadline_counts_from_the_scans_real_start_not_from_when_it_was_prepared(tmp_path):
    now, started = datetime.now(UTC), time.monotonic()
    prepared = prepare(parse_profile(LAB, "t.yaml"), "t.yaml", ["127.0.2.10"], now=now,
                       deadline=now + timedelta(seconds=30))
    time.sleep(0.3)  # preparing, opening the store: time passes before the scan is created
    store = SqliteStore(tmp_path / "inventory.db")
    try:
        run = ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now)
        deadline = run.scheduler.config.deadline
    finally:
        store.close()
    assert deadline is not None
    assert abs(deadline - (started + 30)) < 0.05  # not 0.3 s late
