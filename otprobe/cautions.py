"""Caution rules: read-only operations a probe must not send to particular models.

Read-only is not always harmless: one documented identity read sent some CPU models to a fault state
(docs/safety.md#caution-rules-for-fragile-devices names them and the public source).
The shipped rules live in otprobe/data/cautions.yaml; a profile adds its own in the same shape. A probe reads
the cheapest identity first, then asks `forbidding(...)` before each further operation and records the rule
it obeyed, so the inventory shows what was skipped and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from otprobe.errors import ProfileError
from otprobe.probes import caution_operations

_KEYS = {"pattern", "skip", "source", "note"}


@dataclass(frozen=True)
class CautionRule:
    pattern: re.Pattern[str]  # searched, case-insensitively, in the order code and in the model name
    skip: str  # a probe operation name, e.g. "read_component_id"
    source: str  # citation: advisory, incident, issue
    note: str = ""

    def matches(self, subjects: tuple[str | None, ...]) -> bool:
        return any(self.pattern.search(subject) for subject in subjects if subject)

    def as_dict(self) -> dict[str, str]:
        return {"operation": self.skip, "pattern": self.pattern.pattern, "source": self.source}


def parse_rules(entries: Any, origin: str) -> tuple[CautionRule, ...]:
    """Rules from a list of mappings; ProfileError naming `origin[i].key` on anything malformed.

    A rule may skip only an operation some probe declares in its `caution_operations` (it asks the rules before
    sending it): a rule for any other operation would never match and silently protect nothing, so it is refused.
    """
    known = caution_operations()
    if not isinstance(entries, list | tuple):
        raise ProfileError(f"{origin}: must be a list of caution rules")
    rules = []
    for i, entry in enumerate(entries):
        where = f"{origin}[{i}]"
        if hasattr(entry, "model_dump"):  # a validated profile's Caution model
            entry = entry.model_dump()
        if not isinstance(entry, dict):
            raise ProfileError(f"{where}: must be a mapping with pattern, skip and source")
        if unknown := sorted(set(entry) - _KEYS):
            raise ProfileError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
        for key in ("pattern", "skip", "source"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ProfileError(f"{where}.{key}: required, non-empty text")
        if entry["skip"].strip() not in known:
            raise ProfileError(f"{where}.skip: no probe checks {entry['skip']!r} against caution rules "
                               f"(known: {', '.join(sorted(known))})")
        try:
            pattern = re.compile(entry["pattern"], re.IGNORECASE)
        except re.error as exc:
            raise ProfileError(f"{where}.pattern: invalid regular expression: {exc}") from None
        rules.append(CautionRule(pattern, entry["skip"].strip(), entry["source"].strip(), str(entry.get("note", ""))))
    return tuple(rules)


@cache
def shipped_rules() -> tuple[CautionRule, ...]:
    text = resources.files("otprobe").joinpath("data", "cautions.yaml").read_text(encoding="utf-8")
    return parse_rules(yaml.safe_load(text), "otprobe/data/cautions.yaml")


def forbidding(rules: tuple[CautionRule, ...], operation: str, subjects: tuple[str | None, ...]) -> CautionRule | None:
    """The first rule that forbids `operation` for a device described by `subjects` (order code, model...)."""
    return next((rule for rule in rules if rule.skip == operation and rule.matches(subjects)), None)
