"""Regenerate docs/cli.md, the command reference, from the `--help` of every otprobe command.

`python docs/cli_reference.py` rewrites docs/cli.md; `--check` only compares and exits 1 when the file is stale.
The whole file is generated: the help is rendered in-process, plain (no escape codes) at a fixed width of 100
columns, so the text does not depend on the terminal it was generated in. tests/cli/test_docs.py keeps the file and
the help equal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import typer
import typer.main
import typer.rich_utils
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
WIDTH = 100
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INTRO = (
    "# Command reference\n\n"
    "<!-- Generated from --help by docs/cli_reference.py; edit the help texts in otprobe/cli.py, then run "
    "`.venv/bin/python docs/cli_reference.py`. -->\n\n"
    "The `--help` of every otprobe command, as the installed version prints it. Exit codes, the same for every\n"
    "command, are in the [README](../README.md#exit-codes); profiles and their keys in [profiles.md](profiles.md).\n\n"
    "## Shell completion\n\n"
    "Commands, options and shipped profile names complete on Tab in bash, zsh, fish and PowerShell. Both options\n"
    "detect the shell they are run from: `otprobe --install-completion` adds the completion to that shell's start-up\n"
    "file (open a new shell afterwards); `otprobe --show-completion` prints the script instead, to install by hand.\n"
    "For another shell than the current one, name it: `_OTPROBE_COMPLETE=source_bash otprobe` (or `source_zsh`,\n"
    "`source_fish`, `source_powershell`) prints that shell's script, e.g.\n"
    "`_OTPROBE_COMPLETE=source_bash otprobe > ~/.local/share/bash-completion/completions/otprobe`.\n"
)


def command_paths(app: typer.Typer) -> list[tuple[str, ...]]:
    """Every command path, the root `()` first, each group before its subcommands, in help order."""
    root = typer.main.get_command(app)

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        group_ctx = typer.Context(command)  # type: ignore[arg-type]
        for name in getattr(command, "list_commands", lambda _ctx: [])(group_ctx):
            yield from walk(command.get_command(group_ctx, name), (*path, name))  # type: ignore[attr-defined]

    return list(walk(root, ()))


def help_text(app: typer.Typer, path: tuple[str, ...]) -> str:
    """`otprobe PATH --help` as plain text: no escape codes, trailing spaces and blank edges removed."""
    env = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": str(WIDTH), "FORCE_COLOR": None, "GITHUB_ACTIONS": None}
    # typer reads these at import time; pin them so the caller's terminal cannot change the text
    with mock.patch.multiple(typer.rich_utils, MAX_WIDTH=WIDTH, FORCE_TERMINAL=False, COLOR_SYSTEM=None):
        result = CliRunner().invoke(app, [*path, "--help"], prog_name="otprobe", env=env)
    if result.exit_code != 0:
        raise RuntimeError(f"otprobe {' '.join(path)} --help exited {result.exit_code}: {result.output}")
    lines = [line.rstrip() for line in _ESCAPE.sub("", result.stdout).splitlines()]
    return "\n".join(lines).strip("\n")


def reference(app: typer.Typer) -> str:
    """The whole of docs/cli.md: the intro, then one section per command."""
    parts = [INTRO]
    for path in command_paths(app):
        parts += [f"## `{' '.join(('otprobe', *path))}`", "", "```text", help_text(app, path), "```", ""]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    from otprobe.cli import app

    new = reference(app)
    current = CLI_MD.read_text(encoding="utf-8") if CLI_MD.exists() else ""
    if "--check" in argv:
        if new != current:
            print(f"docs/{CLI_MD.name} is stale; run python docs/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    if new != current:
        CLI_MD.write_text(new, encoding="utf-8")
        print(f"docs/{CLI_MD.name} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
