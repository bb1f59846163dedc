"""The README's table of what goes on the wire is the probes' own declarations, not a copy that can drift."""

from __future__ import annotations

import re
from pathlib import Path

from otprobe.probes import probe_classes
from otprobe.safety import is_read_only

README = Path(__file__).resolve().parent.parent / "README.md"


def test_operations_table_equals_declarations():
    text = README.read_text()
    section = text.split("<!-- operations:start -->")[1].split("<!-- operations:end -->")[0]
    rows = [
        tuple(cell.strip().strip("`") for cell in line.strip("|").split("|"))
        for line in section.strip().splitlines()[2:]
    ]
    declared = [
        (p.name, op.name, op.code, str(op.kind), str(op.packets), str(op.category))
        for p in probe_classes()
        for op in p.operations
    ]
    assert rows == declared


def test_every_declared_operation_is_on_the_allowlist():
    for probe in probe_classes():
        for op in probe.operations:
            assert is_read_only(probe.name, op.code), (probe.name, op)
            assert re.fullmatch(r"[a-z_]+", op.name)
