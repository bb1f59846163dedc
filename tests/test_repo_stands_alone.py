"""The repository stands alone: code, tests and docs cite only what a clone holds.

The project was written beside private notes (safety requirements numbered R1..R21, incident ids, protocol and
library notes, a tracker's issue numbers). A clone has none of them, so a comment or a message that cites one
sends the reader nowhere. Rules are linked as `docs/safety.md#<heading>`, wire formats as `docs/protocols.md`,
design reasons as `docs/design.md`; public sources keep their public names ("python-snap7 #467").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("otprobe", "simulators", "tests", "bench", "docs", "profiles")
SCANNED_FILES = ("README.md", "BENCHMARKS.md", "Makefile", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json", ".service", ".timer", ".sh"}

# Built from pieces so that this file does not match itself.
PRIVATE = re.compile(
    "|".join((
        r"\b(SAFETY|PROTOCOLS(-MORE)?|LIBRARIES|ANCHORS|STYLE)" + r"\.md\b",  # the private notes by file name
        r"\bSAFETY\b",  # "SAFETY R7", "SAFETY I8"
        r"\bPROTOCOLS\s*§",  # "PROTOCOLS §2.4"
        r"shared/" + r"reference|/work/" + r"shared|\.\./" + r"shared",  # where the notes live
        r"\bR\d{1,2}\b",  # requirement numbers: R1..R21
        r"(?i:\bissue \d+\b)",  # tracker issues: "issue 6"
        r"(?i:\bthe profile issue\b|\bthe issue names\b)",  # "the profile issue's default", "the issue names"
    ))
)


def _scanned() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for top in SCANNED_DIRS:
        files += sorted(p for p in (ROOT / top).rglob("*")
                        if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts)
    return [p for p in files if p != Path(__file__).resolve()]


def private_references(text: str) -> list[str]:
    """Every `line: match` in text that cites something a clone does not have."""
    return [f"{number}: {match.group(0)!r} in {line.strip()[:100]}"
            for number, line in enumerate(text.splitlines(), 1) for match in PRIVATE.finditer(line)]


def test_no_file_cites_what_a_clone_lacks() -> None:
    found = [f"{path.relative_to(ROOT)}:{hit}" for path in _scanned()
             for hit in private_references(path.read_text(encoding="utf-8", errors="replace"))]
    assert not found, "references a clone cannot follow:\n" + "\n".join(found)


def test_the_scan_covers_code_tests_and_docs() -> None:
    names = {str(p.relative_to(ROOT)) for p in _scanned()}
    for expected in ("otprobe/cli.py", "otprobe/data/cautions.yaml", "simulators/plants/demo.yaml",
                     "docs/safety.md", "README.md", "tests/identities.py"):
        assert expected in names


@pytest.mark.parametrize("line", [
    "request (SAFETY R7, pylogix #117)",
    "Byte layouts: PROTOCOLS.md §2.",
    "continuations resume mid-record (PROTOCOLS §2.4)",
    "# Identities follow /work/shared/reference/PROTOCOLS.md §4",
    "device's config (LIBRARIES.md §1.4)",
    "# R16: no reply is anywhere near this",
    '"""The command line as a user meets it (issue 6)',
    "# The profile issue's default for devices",
    'source: "gijzelaerr/python-snap7 #467; SAFETY.md I8, R19"',
])
def test_private_references_are_recognised(line: str) -> None:
    assert private_references(line)


@pytest.mark.parametrize("line", [
    'source: "gijzelaerr/python-snap7 #467"',
    "(docs/safety.md#scope-and-exclusions)",
    "MODBUS Application Protocol V1.1b3 §6.21",
    "finished in 1.11x the least time its caps allow (BENCHMARKS.md §3)",
    "Old 1756-ENET modules reject ListIdentity (ottowayi/pycomm3 #294)",
])
def test_public_references_pass(line: str) -> None:
    assert not private_references(line)


def anchors(markdown: Path) -> set[str]:
    """The heading anchors GitHub gives a markdown file: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_between_docs_reach_an_existing_file_and_heading() -> None:
    """Markdown links in README.md and docs/, and `docs/<file>.md#<anchor>` citations anywhere, resolve."""
    broken = []
    for path in _scanned():
        text = path.read_text(encoding="utf-8", errors="replace")
        links = [(path.parent / m[1] if m[1] else path, m[2])  # `](#anchor)` is a heading of the same file
                 for m in re.finditer(r"\]\(([^)#\s:]*\.md)?(?:#([\w-]+))?\)", text)
                 if path.suffix == ".md" and (m[1] or m[2])]
        links += [(ROOT / m[1], m[2]) for m in re.finditer(r"\b(docs/\w+\.md)#([\w-]+)", text)]
        for target, anchor in links:
            if not target.is_file() or (anchor and anchor not in anchors(target)):
                broken.append(f"{path.relative_to(ROOT)}: {target.name}#{anchor}")
    assert not broken, "\n".join(sorted(set(broken)))
