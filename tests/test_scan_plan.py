"""The honest plan and progress: worst case against expected, `plan`'s output, the plan kept in the scan record, the
profile's device budget checked before any packet, and progress lines off a terminal."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from otprobe import render
from otprobe.cli import app
from otprobe.errors import ProfileError
from otprobe.inventory import SqliteStore
from otprobe.model import Observation, Status, Target
from otprobe.pacing.plan import DEFAULT_DENSITY, plan_scan, remaining_seconds
from otprobe.probes import names
from otprobe.profile import load_profile, parse_profile, scan_config
from otprobe.scan import Progress, ScanRun, build_probes, prepare

BLOCK = "127.0.89.0/24"  # shared with test_scan_empty_addresses: nothing listens on .50-.60


def block(n: int) -> list[Target]:
    return [Target(f"127.0.89.{i + 1}") for i in range(n)]


def test_the_expected_scan_is_far_below_the_worst_case_and_grows_with_the_devices() -> None:
    profile = load_profile("default")
    probes, config = build_probes(profile), scan_config(profile)
    targets = block(254)
    few = plan_scan(targets, probes, config, expect_devices=15)
    many = plan_scan(targets, probes, config, expect_devices=100)
    assert plan_scan(targets, probes, config).expected_devices == round(254 * DEFAULT_DENSITY)
    assert few.expected_packets < many.expected_packets < few.total_packets
    assert few.expected_seconds < many.expected_seconds < few.worst_seconds
    dropping = plan_scan(targets, probes, config, expect_devices=15, silent_share=1.0)
    assert dropping.expected_packets < few.expected_packets  # a silent host gets 3 packets, a refusing one 6
    # the model over every address with the plan's own shares is the plan's expected time
    assert remaining_seconds(targets, probes, config, 15 / 254, 0.0) == pytest.approx(few.expected_seconds)
    assert remaining_seconds([], probes, config, 0.5, 0.0) == 0.0


def test_a_device_budget_smaller_than_one_probe_is_refused_before_any_packet() -> None:
    data = {"name": "tight", "scope": {"include": [BLOCK]}, "max_packets_per_device": 3}
    with pytest.raises(ProfileError, match="max_packets_per_device: 3 is less than one worst-case"):
        prepare(parse_profile(yaml.safe_dump(data), "tight.yaml"), "tight", ["127.0.89.1"], now=datetime.now(UTC))


def test_plan_prints_worst_and_expected_as_h_mm_ss_and_whether_they_fit_the_next_window() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["plan", BLOCK, "--scope", BLOCK, "--profile", "maintenance-window",
                                "--expect-devices", "15"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"total\s*│\s*254\s*│\s*6096\s*│\s*\d+:\d\d:\d\d", shown.stdout)
    assert re.search(r"expected with 15 of 254 addresses holding a device and the others refusing probes: about "
                     r"\d+ packets in \d+:\d\d:\d\d", shown.stderr)
    assert re.search(r"next maintenance window .*: the worst case fits, the expected scan fits", shown.stderr)
    data = json.loads(runner.invoke(app, ["plan", BLOCK, "--scope", BLOCK, "--profile", "maintenance-window",
                                          "--expect-devices", "15", "--expect-empty", "drop",
                                          "--format", "json"]).stdout)
    assert data["packets_per_device"] == 24 and data["expected_devices"] == 15
    assert data["expected_seconds"] < data["worst_seconds"]
    assert data["window"]["worst_fits"] is True and data["window"]["expected_fits"] is True
    none = runner.invoke(app, ["plan", BLOCK, "--scope", BLOCK, "--profile", "default"])
    assert "has no maintenance window" in none.stderr


async def test_a_scan_keeps_its_plan_beside_its_results(tmp_path: Path) -> None:
    sections = {name: {"enabled": name == "modbus"} for name in names()}
    data = {"name": "one", "scope": {"include": [BLOCK]}, "protocols": sections, "retries": 0,
            "classes": {"unknown": {"pps": 20, "connect_gap_s": 0}}}
    profile = parse_profile(yaml.safe_dump(data), "one.yaml")
    now = datetime.now(UTC)
    prepared = prepare(profile, "one", ["127.0.89.50-52"], now=now, expect_devices=1)
    store = SqliteStore(tmp_path / "inventory.db")
    try:
        outcome = await ScanRun(prepared, store, tmp_path / "audit.jsonl", now=now).run()
        counts = store.scan(outcome.scan_id).counts
    finally:
        store.close()
    plan = prepared.plan
    assert counts["plan_packets"] == plan.total_packets
    assert counts["plan_worst_s"] == pytest.approx(plan.worst_seconds, abs=1e-3)
    assert counts["plan_expected_s"] == pytest.approx(plan.expected_seconds, abs=1e-3)
    assert counts["refused"] == 3 and counts["not_started"] == 0


def test_many_observations_go_in_in_one_call(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "inventory.db")
    try:
        ips = [f"127.0.89.{i}" for i in range(1, 201)]
        store.begin_scan("s1", "default", ips, protocols=["modbus"])
        store.add_observations("s1", (Observation(ip, "modbus", 502, Status.EXCLUDED, error="excluded")
                                      for ip in ips))
        assert [o.target for o in store.observations("s1")] == ips
    finally:
        store.close()


def test_progress_off_a_terminal_is_a_plain_line_every_30_s_and_nothing_when_quiet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(render, "err", Console(file=io.StringIO()))  # not a terminal, even under pytest -s
    monkeypatch.setattr(render, "info", lambda message, quiet=False: lines.append(message))
    snapshot = Progress(3, 254, 1, 12, 254 * 5, 40, 4.5, 10.0, 125.0)
    shown, quiet = render.ScanProgress(enabled=True), render.ScanProgress(enabled=False)
    for elapsed in (1.0, 10.0, 31.0, 40.0, 62.0):
        shown.update(snapshot, elapsed)
        quiet.update(snapshot, elapsed)
    assert lines == [render.ScanProgress.line(snapshot, 31.0), render.ScanProgress.line(snapshot, 62.0)]
    assert lines[0] == ("3/254 addresses, 1 device found, 40 packets, 4.5/10 pps, elapsed 0:00:31, "
                        "about 0:02:05 left")
