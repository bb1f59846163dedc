"""Regenerate the README's table of what goes on the wire from the probes' own declarations.

`python docs/operations_table.py` rewrites the README section between the `operations` markers with one row per
operation of every built-in probe, in the registry's order (an installed third-party probe is not part of
otprobe's README); `--check` only compares and exits 1 when the README is stale. tests/cli/test_readme_operations.py
keeps README and declarations equal, so a new protocol's operations reach the README by running this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- operations:start -->", "<!-- operations:end -->"


def section() -> str:
    """The README section, markers included."""
    from otprobe.probes import BUILTIN, probe_class

    rows = [START, "<!-- Generated from the probes' declarations by docs/operations_table.py: run it, do not edit. -->",
            "| probe | operation | wire code | kind | packets | category |", "|---|---|---|---|---|---|"]
    for name in BUILTIN:
        rows += [f"| {name} | {op.name} | `{op.code}` | {op.kind} | {op.packets} | {op.category} |"
                 for op in probe_class(name).operations]
    return "\n".join([*rows, END])


def updated_readme(text: str) -> str:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README.name} has no {START} ... {END} markers")
    return text[:start] + section() + text[end + len(END):]


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    new = updated_readme(text)
    if "--check" in argv:
        if new != text:
            print(f"{README.name}: the operations table is stale; run python docs/operations_table.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README.name}: operations table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
