"""The docs stay true to the code: docs/cli.md is the current `--help` of every command, and the
scheduled-refresh files (cron line, systemd service and timer) use the inventory-refresh profile, run unattended,
start inside its window and call otprobe with options that exist."""

from __future__ import annotations

import configparser
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_helpers import REPO, reference_generator
from typer.testing import CliRunner

from otprobe.cli import Exit, app
from otprobe.profile import load_profile
from otprobe.windows import current_window

DOCS = REPO / "docs"
generator = reference_generator()


def cli_md() -> str:
    return generator.CLI_MD.read_text(encoding="utf-8")


def test_docs_cli_md_is_the_current_help() -> None:
    assert cli_md() == generator.reference(app), "stale: run .venv/bin/python docs/cli_reference.py"


def test_the_reference_is_plain_text_within_its_width() -> None:
    assert "\x1b" not in cli_md()
    fenced = re.findall(r"```text\n(.*?)\n```", cli_md(), re.DOTALL)
    assert fenced and max(len(line) for block in fenced for line in block.splitlines()) <= generator.WIDTH


def test_every_command_is_documented_with_its_usage_line() -> None:
    text = cli_md()
    for path in generator.command_paths(app):
        name = " ".join(("otprobe", *path))
        assert f"## `{name}`" in text
        assert f"Usage: {name} " in text


def test_the_readme_links_the_reference_instead_of_carrying_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/cli.md)" in readme
    assert "Usage: otprobe" not in readme


def test_the_generator_checks_and_rewrites_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cli.md"
    monkeypatch.setattr(generator, "CLI_MD", target)
    assert generator.main(["--check"]) == 1  # missing
    assert generator.main([]) == 0 and target.read_text(encoding="utf-8") == generator.reference(app)
    assert generator.main(["--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert generator.main(["--check"]) == 1


# --- scheduled refresh -------------------------------------------------------------------------------------

def unit(name: str) -> tuple[configparser.ConfigParser, list[tuple[str, str, str]]]:
    """The unit file as INI (configparser) and as (section, key, value) entries, repeated keys kept."""
    text = (DOCS / name).read_text(encoding="utf-8")
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text, source=name)
    entries, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line.strip() and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
    return parser, entries


def otprobe_args(command_line: str) -> list[str]:
    words = shlex.split(command_line)
    assert Path(words[0]).name == "otprobe", command_line
    return words[1:]


def assert_valid_otprobe_call(args: list[str]) -> None:
    # click rejects an unknown option or command before the eager --help answers
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"otprobe {' '.join(args)}: {result.output}"


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def assert_unattended_refresh(scan: list[str], diff: list[str]) -> None:
    """A scan with the inventory-refresh profile, quiet, explicit absolute paths; then a diff of that inventory."""
    assert scan[0] == "scan" and diff[:2] == ["inventory", "diff"]
    assert Path(option(scan, "--profile")).stem == "inventory-refresh"
    assert "--quiet" in scan
    for name in ("--db", "--audit"):
        assert Path(option(scan, name)).is_absolute()
    assert option(diff, "--db") == option(scan, "--db")
    assert_valid_otprobe_call(scan)
    assert_valid_otprobe_call(diff)


def inside_refresh_window(hour: int, minute: int) -> bool:
    windows = load_profile("inventory-refresh").windows
    assert windows, "inventory-refresh is meant to run only inside its window"
    return all(current_window(windows, datetime(2026, 3, day, hour, minute, tzinfo=UTC)) for day in range(2, 9))


def test_the_systemd_service_runs_scan_then_diff_unattended_with_the_refresh_profile() -> None:
    parser, entries = unit("otprobe-refresh.service")
    assert parser.sections() == ["Unit", "Service"]
    assert parser["Service"]["Type"] == "oneshot"  # ExecStart lines run in order and stop at the first failure
    assert parser["Service"]["User"] != "root"
    scan, diff = (otprobe_args(v) for s, k, v in entries if (s, k) == ("Service", "ExecStart"))
    assert_unattended_refresh(scan, diff)


def test_the_systemd_timer_starts_the_service_inside_the_refresh_window() -> None:
    parser, _ = unit("otprobe-refresh.timer")
    assert parser.sections() == ["Unit", "Timer", "Install"]
    assert parser["Timer"]["Unit"] == "otprobe-refresh.service"
    match = re.fullmatch(r"\*-\*-\* (\d\d):(\d\d):00 UTC", parser["Timer"]["OnCalendar"])
    assert match, parser["Timer"]["OnCalendar"]
    assert inside_refresh_window(int(match[1]), int(match[2]))
    assert parser["Install"]["WantedBy"] == "timers.target"


def test_the_documented_cron_line_runs_the_refresh_and_diffs_only_after_a_complete_scan() -> None:
    text = (DOCS / "cron.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```cron\n(.*?)\n```", text, re.DOTALL)
    [line] = [entry for entry in block.splitlines() if entry and not entry.startswith("#") and "=" not in
              entry.split()[0]]
    minute, hour, *_days, user, command = line.split(None, 6)
    assert user != "root"
    assert inside_refresh_window(int(hour), int(minute))
    scan_part, _, rest = command.partition(" && {")
    scan = otprobe_args(scan_part.split(" && ", 1)[1].split(" > ")[0])
    diff = otprobe_args(rest.split(" > ")[0])
    assert_unattended_refresh(scan, diff)


@pytest.mark.parametrize("code", list(Exit))
def test_cron_md_explains_every_exit_code(code: Exit) -> None:
    text = (DOCS / "cron.md").read_text(encoding="utf-8")
    assert re.search(rf"^\| {int(code)} \| \S", text, re.MULTILINE)


def test_the_readme_is_a_front_door_under_15_kb() -> None:
    # what otprobe is, the two commands, sample output, a tour, exit codes, links; the rest lives in docs/
    assert len((REPO / "README.md").read_bytes()) < 15_000
