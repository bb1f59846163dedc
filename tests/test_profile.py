"""Profiles: shipped profiles load, defaults are conservative, and every bad file gives one line: file:line key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from otprobe.errors import ProfileError, ScopeError
from otprobe.profile import PROFILES_DIR, Profile, ProfileValidationError, list_profiles, load_profile, parse_profile

BAD = Path(__file__).parent / "profiles_bad"
SHIPPED = ("default", "inventory-refresh", "lab", "maintenance-window")


def test_the_four_profiles_are_shipped_with_descriptions() -> None:
    infos = list_profiles()
    assert tuple(info.name for info in infos) == SHIPPED
    assert all(info.description for info in infos)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_by_name_and_by_path(name: str) -> None:
    by_name = load_profile(name)
    assert by_name.name == name
    assert load_profile(PROFILES_DIR / f"{name}.yaml") == by_name
    assert all(limits.burst <= 2 for limits in by_name.classes.values())


def test_lab_profile_targets_the_demo_plant_on_loopback() -> None:
    lab = load_profile("lab")
    assert [str(net) for net in lab.scope.include] == ["127.0.0.0/8"]
    assert (lab.protocols.modbus.port, lab.protocols.s7.port, lab.protocols.enip.port) == (5020, 10102, 44818)
    assert lab.windows == []  # always allowed
    assert lab.target_scope().resolve(["127.0.1.5"]).targets.ips() == ["127.0.1.5"]


@pytest.mark.parametrize("name", ["default", "maintenance-window", "inventory-refresh"])
def test_generic_profiles_refuse_targets_until_the_user_sets_scope(name: str) -> None:
    profile = load_profile(name)
    assert (profile.protocols.modbus.port, profile.protocols.s7.port, profile.protocols.enip.port) == (502, 102, 44818)
    with pytest.raises(ScopeError, match=r"scope\.include is empty"):
        profile.target_scope().resolve(["127.0.1.5"])
    # --scope replaces include without editing the file
    assert profile.target_scope(include=["127.0.1.0/24"]).resolve(["127.0.1.5"]).targets.ips() == ["127.0.1.5"]


def test_window_profiles_have_windows_and_default_is_slowest_where_it_matters() -> None:
    default, window, refresh = (load_profile(n) for n in ("default", "maintenance-window", "inventory-refresh"))
    assert window.windows and refresh.windows and not default.windows
    assert window.classes["plc"].pps > default.classes["plc"].pps
    assert refresh.classes["unknown"].pps < default.classes["unknown"].pps
    assert default.global_pps < window.global_pps


def test_defaults_are_conservative() -> None:
    profile = Profile(name="bare")
    assert profile.classes["unknown"].pps == 0.5
    assert profile.classes["unknown"].burst == 1
    assert (profile.retries, profile.breaker.failures, profile.global_pps) == (1, 2, 10.0)
    assert profile.protocols.modbus.unit_ids == [1]
    assert profile.protocols.s7.read_cpu_state is False
    assert profile.enabled_intrusive("modbus") == frozenset()
    assert profile.scope.include == []


def test_helpers_for_the_scheduler_and_the_probes() -> None:
    text = """
name: site
classes:
  unknown: {pps: 0.5}
  plc: {pps: 2, class_pps: 10}
assign: [{cidr: 127.0.1.0/24, class: plc}]
protocols:
  modbus:
    unit_ids: [1, 255]
    intrusive: {unit_id_sweep: "gateway 7 behind serial line, agreed with operations (ticket 42)"}
"""
    profile = parse_profile(text, "site.yaml")
    assert profile.limits("plc").class_pps == 10
    assert profile.limits("hmi") == profile.classes["unknown"]
    assert profile.enabled_intrusive("modbus") == frozenset({"unit_id_sweep"})
    assert profile.protocol_options("modbus").unit_ids == [1, 255]
    targets = profile.target_scope(["127.0.0.0/8"]).resolve(["127.0.1.1", "127.0.2.1"]).targets
    assert [target.device_class for target in targets] == ["plc", "unknown"]


def test_unquoted_clock_times_are_read_as_times_not_base_60_numbers() -> None:
    profile = parse_profile("windows:\n  - {days: [sat], start: 02:00, end: 6:30, tz: UTC}\n", "w.yaml")
    assert (profile.windows[0].start, profile.windows[0].end) == ("02:00", "6:30")


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "site-north.yaml"
    path.write_text("description: north hall\n")
    assert load_profile(path).name == "site-north"
    assert load_profile(str(path)).description == "north hall"


@pytest.mark.parametrize(
    ("file", "line", "key", "fragment"),
    [
        ("negative_rate.yaml", 7, "classes.plc.pps", "must be greater than 0 (got -1)"),
        ("unknown_key.yaml", 7, "classes.unknown.burts", "unknown key (allowed: burst, class_pps"),
        ("bad_cidr.yaml", 5, "scope.include[1]", "invalid IPv4 CIDR '127.0.2.300/24'"),
        ("bad_timezone.yaml", 6, "windows[0].tz", "unknown time zone 'Europe/Berln'"),
        ("bad_time.yaml", 4, "windows[0].start", "invalid time '25:00'"),
        ("bad_day.yaml", 3, "windows[0].days", "unknown day 'sonday'"),
        ("unit_id_zero.yaml", 5, "protocols.modbus.unit_ids[0]", "unit id 0 is the broadcast id"),
        ("burst_too_high.yaml", 3, "classes.unknown.burst", "must be less than or equal to 2 (got 5)"),
        ("intrusive_without_reason.yaml", 5, "protocols.modbus.intrusive.unit_id_sweep", "needs a written reason"),
        ("unknown_class.yaml", 7, "assign[1].class", "unknown class 'rtu' (defined: plc, unknown)"),
        ("missing_unknown_class.yaml", 2, "classes", "must define the class 'unknown'"),
        ("duplicate_key.yaml", 5, "global_pps", "duplicate key"),
        ("unknown_caution_operation.yaml", 5, "cautions[0].skip",
         "no probe checks operation 'read_componnet_id' against caution rules (known: read_component_id, "
         "read_cpu_state); did you mean 'read_component_id'?"),
    ],
)
def test_bad_profiles_give_one_line_with_file_line_and_key(file: str, line: int, key: str, fragment: str) -> None:
    path = BAD / file
    with pytest.raises(ProfileError) as failed:
        load_profile(path)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line} {key}: ")
    assert fragment in message


@pytest.mark.parametrize(
    ("file", "line", "fragment"),
    [("syntax_error.yaml", 4, "YAML syntax error: expected ',' or '}'"), ("not_a_mapping.yaml", 1, "mapping of keys")],
)
def test_unreadable_yaml_gives_one_line_with_file_and_line(file: str, line: int, fragment: str) -> None:
    path = BAD / file
    with pytest.raises(ProfileError) as failed:
        load_profile(path)
    assert str(failed.value).startswith(f"{path}:{line} ")
    assert fragment in str(failed.value)


def test_several_errors_are_all_kept_and_the_message_stays_one_line() -> None:
    text = "name: site\nretries: -2\nglobal_pps: 0\nwindows: [{days: [sat], start: '1:00', end: '2:00', tz: Nowhere}]\n"
    with pytest.raises(ProfileValidationError) as failed:
        parse_profile(text, "site.yaml")
    where = [problem.split(" ", 1)[0] for problem in failed.value.problems]
    assert where == ["site.yaml:2", "site.yaml:3", "site.yaml:4"]
    assert str(failed.value) == failed.value.problems[0] + " (and 2 more)"


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'labb' .*default, inventory-refresh, lab"):
        load_profile("labb")
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile("no/such/file.yaml")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 70_000), st.floats(allow_nan=False), st.text(max_size=12))
_keys = st.sampled_from(
    ["name", "scope", "include", "classes", "unknown", "pps", "burst", "windows", "days", "start", "tz", "protocols",
     "modbus", "unit_ids", "assign", "cidr", "class", "retries", "cautions", "pattern", "bogus"]
)
_tree = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4))


@settings(max_examples=150, deadline=None)
@given(document=st.dictionaries(_keys, _tree, max_size=6))
def test_arbitrary_documents_either_load_or_give_profile_errors_with_file_and_line(document: dict) -> None:
    try:
        parse_profile(yaml.safe_dump(document), "fuzz.yaml")
    except ProfileValidationError as exc:
        assert all(problem.startswith("fuzz.yaml:") and "\n" not in problem for problem in exc.problems)
