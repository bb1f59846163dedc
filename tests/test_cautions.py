"""Caution rules: the shipped file catches the fail-safe S7-300 CPUs of python-snap7 #467 and nothing else it
should not, and profile rules are validated before they can silently fail to protect anything."""

from __future__ import annotations

import pytest

from otprobe.cautions import forbidding, parse_rules, shipped_rules
from otprobe.errors import ProfileError
from otprobe.probes.s7 import S7Probe, model_from_order_code
from otprobe.profile import Caution

FAIL_SAFE = ["6ES7 315-2FJ14-0AB0", "6ES7 317-2FK14-0AB0", "6ES7 319-3FL01-0AB0", "6ES7 315-6FF01-0AB0",
             "6ES7 317-6FF04-0AB0", "6ES7 315-2FH13-0AB0"]
ORDINARY = ["6ES7 315-2EH14-0AB0", "6ES7 315-2AG10-0AB0", "6ES7 317-2EK14-0AB0", "6ES7 151-8AB01-0AB0",
            "6ES7 516-3FN02-0AB0", "6ES7 511-1FK02-0AB0", "6ES7 212-1BE40-0XB0", "6ES7 416-3FS07-0AB0"]


@pytest.mark.parametrize("order_code", FAIL_SAFE)
def test_fail_safe_s7_300_cpus_skip_component_identification(order_code: str) -> None:
    rule = forbidding(shipped_rules(), "read_component_id", (order_code, None))
    assert rule is not None and "#467" in rule.source
    assert forbidding(shipped_rules(), "read_module_id", (order_code, None)) is None  # only 0x001C is named


@pytest.mark.parametrize("order_code", ORDINARY)
def test_other_cpus_are_not_caught(order_code: str) -> None:
    assert forbidding(shipped_rules(), "read_component_id", (order_code, model_from_order_code(order_code))) is None


@pytest.mark.parametrize("model", ["CPU 315F-2 PN/DP", "CPU 317F-2 DP", "cpu 319f-3 pn/dp"])
def test_rules_also_match_the_model_name(model: str) -> None:
    assert forbidding(shipped_rules(), "read_component_id", (None, model)) is not None


def test_shipped_rules_name_s7_operations_and_cite_a_source() -> None:
    names = {op.name for op in S7Probe.operations}
    assert shipped_rules()
    for rule in shipped_rules():
        assert rule.skip in names and rule.source and rule.note


def test_profile_rules_are_added_to_the_shipped_ones() -> None:
    probe = S7Probe(cautions=[{"pattern": "^6ES7 212", "skip": "read_cpu_state", "source": "site rule 7"}])
    assert probe.cautions[: len(shipped_rules())] == shipped_rules()
    rule = forbidding(probe.cautions, "read_cpu_state", ("6ES7 212-1BE40-0XB0", None))
    assert rule is not None and rule.as_dict() == {"operation": "read_cpu_state", "pattern": "^6ES7 212",
                                                   "source": "site rule 7"}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"pattern": "x"}, "must be a list"),
        (["6ES7"], r"cautions\[0\]: must be a mapping"),
        ([{"pattern": "x", "skip": "read_component_id"}], r"cautions\[0\]\.source: required"),
        ([{"pattern": "(", "skip": "read_component_id", "source": "s"}], r"\.pattern: invalid regular expression"),
        ([{"pattern": "x", "skip": "  ", "source": "s"}], r"\.skip: required"),
        ([{"pattern": "x", "skip": "a", "source": "s", "skp": "b"}], r"\.skp: unknown key"),
    ],
)
def test_malformed_rules_name_the_key(entries: object, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_rules(entries, "cautions")


def test_validated_profile_cautions_are_accepted() -> None:
    site = Caution(pattern="^6ES7 151-8", skip="read_component_id", source="vendor note")
    rules = parse_rules([site], "cautions")
    assert forbidding(rules, "read_component_id", ("6ES7 151-8AB01-0AB0", None)) is not None


def test_a_rule_for_an_operation_no_probe_checks_is_refused():
    with pytest.raises(ProfileError, match=r"site\[0\]\.skip: no probe checks 'read_componnet_id'"):
        parse_rules([{"pattern": "x", "skip": "read_componnet_id", "source": "typo"}], "site")
