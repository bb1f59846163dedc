"""One set of safety defaults: a library caller is paced exactly like a profile that sets nothing."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from otprobe.pacing import ClassLimits, ScanConfig
from otprobe.profile import Profile, load_profile, parse_profile, scan_config


def test_the_library_defaults_are_the_default_profiles_values() -> None:
    library = scan_config()
    silent = scan_config(parse_profile("name: silent\n", "silent.yaml"))
    assert library == silent
    model = Profile(name="m")
    unknown = model.classes["unknown"]
    assert library.global_pps == model.global_pps
    assert library.max_devices_in_flight == model.max_devices_in_flight
    assert library.retries == model.retries and library.breaker_failures == model.breaker.failures
    assert (library.timeouts.connect_s, library.timeouts.response_s) == (model.timeouts.connect_s,
                                                                        model.timeouts.response_s)
    assert library.classes == {"unknown": ClassLimits(**unknown.model_dump())}
    assert library.limits_for("no-such-class") == library.classes["unknown"]
    assert library.enabled_intrusive == frozenset()


def test_a_shipped_profile_reaches_the_scheduler_unchanged() -> None:
    profile = load_profile("default")
    config = scan_config(profile, deadline=12.5)
    assert config.deadline == 12.5
    assert config.global_pps == profile.global_pps and config.max_devices_in_flight == profile.max_devices_in_flight
    assert {name: vars(limits) for name, limits in config.classes.items()} == {
        name: limits.model_dump() for name, limits in profile.classes.items()
    }


@pytest.mark.parametrize("cls", [ClassLimits, ScanConfig])
def test_safety_values_have_no_default_of_their_own(cls: type) -> None:
    # only what no profile configures may default here; everything else must come from a profile or the caller
    defaulted = {f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}
    assert defaulted <= {"deadline", "backoff_s", "jitter", "headroom", "enabled_intrusive"}
    with pytest.raises(TypeError):
        cls()


def test_a_config_without_the_unknown_class_is_refused() -> None:
    plc = ClassLimits(pps=1.0, burst=1, class_pps=None, connect_gap_s=2.0, max_session_s=10.0)
    defaults = scan_config()
    with pytest.raises(ValueError, match="unknown"):
        ScanConfig(global_pps=10.0, classes={"plc": plc}, timeouts=defaults.timeouts, retries=1,
                   breaker_failures=2, max_devices_in_flight=8, max_addresses_in_flight=32,
                   max_packets_per_device=None)
