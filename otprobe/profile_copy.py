"""A site profile started from a shipped one (`otprobe profiles copy`): the shipped text with its comments, renamed,
and with scope.include emptied, so that the copy refuses every target until someone names the networks it may scan.

The text is edited line by line rather than loaded and dumped: a YAML round trip would drop the comments, which
are the documentation of every value a site is about to change.
"""

from __future__ import annotations

import json
import re

from otprobe.errors import ProfileError
from otprobe.profile import PROFILES_DIR, parse_profile

_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_NAME = re.compile(r"^name\s*:.*$")
_INCLUDE = re.compile(r"^(\s+)include\s*:")
EMPTY_INCLUDE = "include: []   # the networks this site may scan, e.g. [192.0.2.0/24]; empty refuses every target"


def shipped_names() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def site_copy(shipped: str, new_name: str) -> str:
    """The text of a copy of shipped profile `shipped`, named `new_name`, with an empty scope.include."""
    if shipped not in shipped_names():
        raise ProfileError(f"unknown shipped profile {shipped!r} (shipped: {', '.join(shipped_names())})")
    source = (PROFILES_DIR / f"{shipped}.yaml").read_text(encoding="utf-8")
    lines = [f"# A site profile copied from the shipped profile {shipped!r}; scope.include was emptied on purpose.",
             *_edited(source.splitlines(), new_name)]
    text = "\n".join(lines) + "\n"
    copy = parse_profile(text, f"copy of {shipped}")  # the edit must leave a valid profile that scans nothing
    if copy.scope.include or copy.name != new_name:
        raise ProfileError(f"the copy of {shipped!r} could not be edited safely: scope.include or name not reset")
    return text


def _edited(lines: list[str], new_name: str) -> list[str]:
    out: list[str] = []
    in_scope = skipping = False
    for line in lines:
        if skipping:  # the items of a block-style include list: `- 192.0.2.0/24` lines indented below it
            if line.strip().startswith("-") and not _TOP_KEY.match(line):
                continue
            skipping = False
        if _TOP_KEY.match(line):
            in_scope = line.startswith("scope")
        if _NAME.match(line):
            out.append(f"name: {json.dumps(new_name)}")
            continue
        include = _INCLUDE.match(line) if in_scope else None
        if include:
            out.append(include[1] + EMPTY_INCLUDE)
            skipping = True
            continue
        out.append(line)
    return out
