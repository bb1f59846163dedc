"""Property tests of the command line: whatever the target strings, options or profile documents, otprobe answers
with an exit code from the README table and at most an error line, never a traceback.

Everything runs in-process through typer's CliRunner with `plan`, `profiles check` and a `scan` whose targets lie
outside its scope, so no example sends a packet. Example counts stay modest to keep the suite fast.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from otprobe.cli import app

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEWER = settings(FUZZ, max_examples=60)  # for the tests that run several commands per example


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), prog_name="otprobe",
                                env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    if result.exit_code == 5:  # "any other error": here it could only be an exception nobody expected
        raise AssertionError(result.stderr)
    return result.exit_code, result.stderr


octet = st.integers(0, 300).map(str)
address = st.lists(octet, min_size=1, max_size=5).map(".".join)
target = st.one_of(
    address,
    st.tuples(address, st.integers(-1, 40)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(address, st.one_of(address, octet)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.text(alphabet="0123456789./-:@# \t", max_size=40),
    st.text(max_size=60),
)


@FUZZ
@given(targets=st.lists(target, min_size=1, max_size=3))
def test_any_target_string_plans_or_is_refused_with_a_table_code(targets: list[str]) -> None:
    # the scope is one /24, so a large block is refused at its first address instead of planned address by address
    code, stderr = invoke("plan", "--profile", "lab", "--scope", "127.0.213.0/24", "--", *targets)
    assert code in (0, 2, 3), stderr
    assert code == 0 or stderr.startswith("otprobe: error: ") or "Usage:" in stderr


option_text = st.one_of(st.text(max_size=30), st.text(alphabet=string.digits + ".:-+hmsT =/,", max_size=30))


@FEWER
@given(deadline=option_text, port=option_text, protocol=option_text, scope=option_text)
def test_any_scan_option_is_a_usage_error_or_reaches_the_scope_check(tmp_path: Path, deadline: str, port: str,
                                                                    protocol: str, scope: str) -> None:
    # 10.0.0.1 is outside lab's scope: each option either fails as usage (2) or the target is refused (3) before
    # any packet; `plan` shares the scan's option handling and needs no inventory, so it carries most options
    code, stderr = invoke("scan", "10.0.0.1", "--profile", "lab", "--deadline", deadline, "--db",
                          str(tmp_path / "i.db"), "--audit", str(tmp_path / "audit.jsonl"))
    assert code in (2, 3), stderr
    for extra in (["--port", port], ["--protocol", protocol], ["--scope", scope]):
        code, stderr = invoke("plan", "10.0.0.1", "--profile", "lab", *extra)
        assert code in (2, 3) or (extra[0] == "--scope" and code == 0), (extra, stderr)


def _count_in_range(text: str) -> bool:
    try:
        return 1 <= int(text) <= 50  # how click reads an int option
    except ValueError:
        return False


@FEWER
@given(count=st.one_of(st.text(max_size=8), st.integers(-5, 60).map(str)), fmt=st.text(max_size=8))
def test_any_count_or_format_is_accepted_or_a_usage_error(tmp_path: Path, count: str, fmt: str) -> None:
    code, stderr = invoke("windows", "--profile", "maintenance-window", "--count", count)
    assert code == (0 if _count_in_range(count) else 2), stderr
    code, stderr = invoke("scans", "list", "--db", str(tmp_path / "i.db"), "--format", fmt)
    assert code == (0 if fmt in ("table", "json") else 2), stderr


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["127.0.0.0/8", "02:00", "24:00", "UTC", "sat", "plc",
                                                           "unknown", "unit_id_sweep", "read_cpu_state", ""]))
KEYS = ["name", "description", "scope", "include", "exclude", "global_pps", "classes", "unknown", "plc", "pps",
        "burst", "class_pps", "connect_gap_s", "max_session_s", "assign", "cidr", "class", "protocols", "modbus",
        "s7", "enip", "port", "unit_ids", "rack_slots", "intrusive", "enabled", "read_cpu_state", "udp",
        "timeouts", "connect_s", "retries", "breaker", "failures", "windows", "days", "start", "end", "tz",
        "max_devices_in_flight", "cautions", "pattern", "skip", "source", "bogus"]
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)


@FUZZ
@given(document=st.dictionaries(st.sampled_from(KEYS), documents, max_size=8))
def test_any_profile_document_is_valid_or_one_line_per_problem(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    code, stderr = invoke("profiles", "check", str(path))
    assert code in (0, 2), stderr
    assert code == 0 or all(line.startswith(f"otprobe: error: {path}:") for line in stderr.splitlines()), stderr


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet="{}[]:,-&*!|>'\"#? \n\tab01", max_size=200)))
def test_any_profile_text_is_valid_or_one_line_per_problem(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, stderr = invoke("profiles", "check", str(path))
    assert code in (0, 2), stderr
    assert code == 0 or all(line.startswith("otprobe: error: ") for line in stderr.splitlines()), stderr
