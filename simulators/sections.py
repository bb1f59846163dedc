"""The first check of every plant-file section a simulator module parses: a mapping, and only keys it knows.

Messages name the offending key under the section's own path (`enip.colour: unknown key (known: ...)`); the plant
loader adds the file and the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def known_keys(section: Any, where: str, keys: Sequence[str], *, shape: str = "") -> dict[str, Any]:
    """`section` itself if it is a mapping of known keys; otherwise ValueError naming `where` (and the first unknown
    key). `shape` is added to the not-a-mapping message (e.g. the keys a row may have)."""
    if not isinstance(section, dict):
        raise ValueError(f"{where}: must be a mapping{f' ({shape})' if shape else ''}")
    unknown = sorted(set(section) - set(keys), key=str)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(keys)})")
    return section
