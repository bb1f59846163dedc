"""`otprobe report SCAN -o FILE.md` of a real scan: the HTML report's content for a ticket, with every device string
inert once a Markdown renderer (markdown-it, CommonMark with tables, as ticket systems use) has read it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from xml.etree.ElementTree import Element

import html5lib
from markdown_it import MarkdownIt
from report_plant import (
    EXCLUDED,
    HOSTILE,
    HOSTILE_MODEL,
    HOSTILE_VENDOR,
    METERS,
    REASON,
    REMOVED,
    SILENT,
    TARGETS,
    UPGRADED,
    Scanned,
    scanned_fixture,  # noqa: F401 (the session fixture `scanned`)
)

from otprobe.render import visible


async def markdown(scanned: Scanned, tmp_path: Path) -> str:
    out = tmp_path / "scan.md"
    done = await scanned.otprobe("report", scanned.second_id[:17], "-o", str(out), "--audit", str(scanned.audit))
    assert done.code == 0, done.stderr
    assert done.stdout == "" and f"report of scan {scanned.second_id[:17]}: {out}" in done.stderr
    return out.read_text(encoding="utf-8")


def rendered_rows(text: str) -> tuple[list[list[str]], Element]:
    """Every table row as a renderer shows it: cell texts."""
    html = MarkdownIt("commonmark").enable("table").render(text)
    document = html5lib.parse(html, namespaceHTMLElements=False)
    return [["".join(cell.itertext()) for cell in row] for row in document.iter("tr")], document


async def test_the_markdown_report_holds_the_same_facts(scanned: Scanned, tmp_path: Path) -> None:
    text = await markdown(scanned, tmp_path)
    rows, _ = rendered_rows(text)
    assert ["outcome", "complete"] in rows and any(row[0] == "maintenance window" and REASON in row[1] for row in rows)
    found = [row for row in rows if len(row) == 9 and row[0] in TARGETS]
    assert [row[0] for row in found] == TARGETS
    for row in found:
        if row[0] in METERS and row[0] != REMOVED:
            vendor, model, firmware = METERS[row[0]]
            assert row[4:7] == [vendor, model, "v1.5" if row[0] == UPGRADED else firmware]
    assert any(row[:2] == ["firmware changed", UPGRADED] and row[3:] == ["v1.4", "v1.5"] for row in rows)
    assert any(row[:2] == ["missing", REMOVED] for row in rows)
    assert {row[0] for row in rows if len(row) == 4 and "zero packets sent" in row[2]} == {EXCLUDED}
    assert any(row[0] == SILENT and len(row) == 4 for row in rows)
    safety = {row[0]: row for row in rows if len(row) == 6 and row[0] in TARGETS}
    for address, received in scanned.received.items():
        assert (int(safety[address][2]), int(safety[address][3])) == (received.packets, received.connections)
    last = [line for line in scanned.audit.read_bytes().splitlines()
            if json.loads(line)["scan"] == scanned.second_id][-1]
    assert f"`{hashlib.sha256(last).hexdigest()}`" in text


async def test_device_strings_cannot_become_markdown(scanned: Scanned, tmp_path: Path) -> None:
    text = await markdown(scanned, tmp_path)
    rows, document = rendered_rows(text)
    hostile = next(row for row in rows if row[0] == HOSTILE and len(row) == 9)  # the `|` opened no cell of its own
    assert hostile[4:6] == [HOSTILE_VENDOR, visible(HOSTILE_MODEL)]
    assert hostile[6] == "V1<b>bold"
    tags = {str(element.tag) for element in document.iter()}
    assert tags.isdisjoint({"a", "img", "script", "b", "strong", "em"}), tags
    assert "\x1b" not in text


async def test_markdown_to_stdout_is_the_file(scanned: Scanned, tmp_path: Path) -> None:
    text = await markdown(scanned, tmp_path)
    done = await scanned.otprobe("report", scanned.second_id, "--format", "markdown", "--audit", str(scanned.audit))
    assert done.code == 0 and done.stdout == text
