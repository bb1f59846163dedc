"""otprobe: paced, read-only identity and firmware inventory for OT networks.

The library is the API; the `otprobe` command is a thin layer over it:

    profile = load_profile("lab")
    prepared = prepare(profile, "lab", ["127.0.1.0/24"], now=datetime.now(UTC))   # no packet sent yet
    outcome = await ScanRun(prepared, SqliteStore("inv.db"), Path("audit.jsonl"), now=...).run()

This file owns the package's version and its public names. The names are resolved on first use: every
`otprobe` command imports this package first, and importing the scanner here would load the protocol libraries
before `otprobe --help` could answer.
"""

from __future__ import annotations

import importlib
from typing import Any

# the one place the version is written: pyproject.toml reads it from here when the package is built
__version__ = "0.1.0"

_PUBLIC = {
    "probe_classes": "otprobe.probes",
    "Identity": "otprobe.model",
    "Observation": "otprobe.model",
    "ScanRun": "otprobe.scan",
    "SqliteStore": "otprobe.inventory",
    "Status": "otprobe.model",
    "Target": "otprobe.model",
    "load_profile": "otprobe.profile",
    "prepare": "otprobe.scan",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'otprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
