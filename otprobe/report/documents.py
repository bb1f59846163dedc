"""Scan facts as a self-contained HTML page or as Markdown for a ticket, through Jinja2 templates.

Vendor, model, serial and error strings come from the devices, and a device can send markup. In HTML every value
is escaped by Jinja2's autoescaping and then passes `render.visible` (control characters, line separators and
bidirectional overrides spelled out, as on a terminal); in Markdown, after `render.visible`, every character that
Markdown may read as syntax inside a line is backslash-escaped, so no device string can become a link, an image,
raw HTML, a mention or a table cell of its own. Only the SVG plots, drawn here by matplotlib from numbers, are
inserted as markup.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from otprobe import __version__
from otprobe.render import visible
from otprobe.report.evidence import window_cap

if TYPE_CHECKING:
    from jinja2 import Environment

    from otprobe.report.facts import ScanFacts

# What Markdown, GitHub's and GitLab's flavours included, may read as syntax inside a line: emphasis, code, links,
# images, raw HTML and entities, table cells, headings and issue references, @mentions, :emoji:, $math$. Left alone:
# . , / - ' " ; ? %, which mean something only at the start of a line, where no value is ever put.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&:@$=^])")


def markdown_text(value: Any) -> str:
    """A value as inert Markdown text on one line: visible controls, escaped punctuation."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", visible("" if value is None else str(value)))


def shown(value: Any) -> str:
    """A value as a person reads it: empty for nothing, control characters spelled out."""
    return "" if value is None else visible(str(value))


@cache
def _environment(markdown: bool) -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("otprobe.report", "templates"),
        autoescape=not markdown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["shown"] = markdown_text if markdown else shown
    env.globals["window_cap"] = window_cap
    return env


def _context(facts: ScanFacts) -> dict[str, Any]:
    return {"f": facts, "version": __version__, "fields": ("asset_type", "vendor", "model", "firmware", "serial")}


def to_html(facts: ScanFacts) -> str:
    from markupsafe import Markup

    from otprobe.report.plots import timeline_svg

    # drawn here from numbers, so inserted as markup
    plots = [Markup(timeline_svg(timeline, f"plot{n}-")) for n, timeline in enumerate(facts.timelines)]
    return _environment(False).get_template("report.html.j2").render(**_context(facts), plots=plots)


def to_markdown(facts: ScanFacts) -> str:
    return _environment(True).get_template("report.md.j2").render(**_context(facts))
