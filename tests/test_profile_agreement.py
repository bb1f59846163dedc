"""`profiles check`, `plan` and `scan` read a profile through the same validation, so a profile that passes the
check is one the scan accepts, and one the scan would refuse fails the check with the same file:line key message.

An intrusive operation must be a declared intrusive operation of that protocol's probe whose wire code is on the
read-only allowlist (a write never is); booleans are never numbers, and numbers are never booleans.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.contract import Category, Operation
from otprobe.probes import probe_classes
from otprobe.probes.modbus import ModbusProbe
from otprobe.profile import Profile, ProfileValidationError, Protocols, load_profile, parse_profile

BAD = Path(__file__).parent / "profiles_bad"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text("name: site\nscope: {include: [127.0.0.0/8]}\n" + text)
    return path


@pytest.mark.parametrize(("section", "message"), [
    ("modbus: {intrusive: {write_single_register: 'clear the latch'}}",
     "protocols.modbus.intrusive.write_single_register: not an operation of the modbus probe "
     "(its intrusive operations: unit_id_sweep)"),
    ("s7: {intrusive: {plc_stop: 'for the test'}}",
     "protocols.s7.intrusive.plc_stop: not an operation of the s7 probe (it has no intrusive operation)"),
    ("enip: {intrusive: {set_attribute_single: 'rename'}}",
     "protocols.enip.intrusive.set_attribute_single: not an operation of the enip probe (it has no intrusive "
     "operation)"),
    ("modbus: {intrusive: {unit_id_swep: 'gateway 7'}}",
     "protocols.modbus.intrusive.unit_id_swep: not an operation of the modbus probe (its intrusive operations: "
     "unit_id_sweep); did you mean 'unit_id_sweep'?"),
    ("modbus: {intrusive: {read_basic: 'why not'}}",
     "protocols.modbus.intrusive.read_basic: 'read_basic' is a safe operation, always sent"),
])
def test_check_plan_and_scan_refuse_an_intrusive_operation_alike(tmp_path: Path, section: str, message: str) -> None:
    path = write(tmp_path, f"protocols:\n  {section}\n")
    outputs = set()
    for command in (("profiles", "check", str(path)), ("plan", "127.0.1.1", "--profile", str(path)),
                    ("scan", "127.0.1.1", "--profile", str(path), "--db", str(tmp_path / "i.db"))):
        code, stderr = run(*command)
        assert code == 2, stderr
        outputs.add(stderr)
    [stderr] = outputs
    assert stderr.startswith(f"otprobe: error: {path}:4 {message}"), stderr
    scans = CliRunner().invoke(app, ["scans", "list", "--db", str(tmp_path / "i.db"), "--format", "json"])
    assert (scans.exit_code, scans.stdout.strip()) == (0, "[]")  # refused before a scan began


def test_the_declared_intrusive_operation_with_a_reason_passes_both(tmp_path: Path) -> None:
    path = write(tmp_path, "protocols:\n  modbus: {intrusive: {unit_id_sweep: 'gateway 7, ticket 42'}}\n")
    assert run("profiles", "check", str(path)) == (0, f"{path}: ok (profile site)\n")
    assert load_profile(path).enabled_intrusive("modbus") == frozenset({"unit_id_sweep"})


def test_an_intrusive_operation_whose_code_is_not_allowlisted_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    # a probe that declared a write as intrusive: the allowlist still has the last word, at load time as on the wire
    write_op = Operation("write_single_register", "fc:0x06", category=Category.INTRUSIVE)
    monkeypatch.setattr(ModbusProbe, "operations", (*ModbusProbe.operations, write_op))
    code, stderr = run("profiles", "check", str(BAD / "intrusive_write.yaml"))
    assert code == 2
    assert stderr == (f"otprobe: error: {BAD / 'intrusive_write.yaml'}:6 protocols.modbus.intrusive."
                      "write_single_register: 'write_single_register' sends fc:0x06, which is not on the read-only "
                      "allowlist: it is never sent\n")


def test_a_boolean_rate_is_a_line_error_in_check_and_scan_alike(tmp_path: Path) -> None:
    path = BAD / "rate_is_boolean.yaml"
    expected = f"otprobe: error: {path}:4 classes.unknown.pps: must be a number, not a boolean (got true)\n"
    assert run("profiles", "check", str(path)) == (2, expected)
    assert run("scan", "127.0.1.1", "--profile", str(path), "--db", str(tmp_path / "i.db")) == (2, expected)


def _numeric_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every int or float field below `model`, as a key path (a dict of models is entered through `unknown`, and
    `protocols` through every registered probe's own options model)."""
    if model is Protocols:
        return [key for cls in probe_classes() for key in _numeric_fields(cls.Options, (*path, cls.name))]
    found = []
    for name, field in model.model_fields.items():
        key, annotation = (*path, field.alias or name), field.annotation
        if get_origin(annotation) in (Union, UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        if get_origin(annotation) is dict:
            annotation, key = get_args(annotation)[1], (*key, "unknown")
        if annotation in (int, float):
            found.append(key)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_numeric_fields(annotation, key))
    return found


NUMERIC = _numeric_fields(Profile)


def _document(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"name": "site", "classes": {"unknown": {"pps": 1}}}
    here = document
    for key in path[:-1]:
        here = here.setdefault(key, {})
    here[path[-1]] = value
    return document


def test_the_walk_finds_every_kind_of_number() -> None:
    assert len(NUMERIC) >= 15 and ("global_pps",) in NUMERIC and ("protocols", "s7", "port") in NUMERIC
    assert ("classes", "unknown", "burst") in NUMERIC and ("timeouts", "connect_s") in NUMERIC


@pytest.mark.parametrize("path", NUMERIC, ids=".".join)
@pytest.mark.parametrize("value", [True, False])
def test_no_number_in_a_profile_accepts_a_boolean(path: tuple[str, ...], value: bool) -> None:
    with pytest.raises(ProfileValidationError) as refused:
        parse_profile(yaml.safe_dump(_document(path, value)), "site.yaml")
    assert re.match(rf"site\.yaml:\d+ {re.escape('.'.join(path))}: must be a number, not a boolean", str(refused.value))


@pytest.mark.parametrize(("text", "key"), [
    ("protocols: {modbus: {unit_ids: [true]}}", r"protocols\.modbus\.unit_ids\[0\]: must be a number"),
    ("protocols: {s7: {rack_slots: [[0, yes]]}}", r"protocols\.s7\.rack_slots\[0\]\[1\]: must be a number"),
    ("protocols: {s7: {enabled: 1}}", r"protocols\.s7\.enabled: must be a valid boolean \(got 1\)"),
    ("protocols: {enip: {udp: 0}}", r"protocols\.enip\.udp: must be a valid boolean \(got 0\)"),
    ("protocols: {s7: {read_cpu_state: 1}}", r"protocols\.s7\.read_cpu_state: must be a valid boolean"),
])
def test_list_items_and_flags_are_typed_too(text: str, key: str) -> None:
    with pytest.raises(ProfileValidationError, match=rf"^site\.yaml:1 {key}"):
        parse_profile(text, "site.yaml")
