"""The report's plots as inline SVG, drawn by matplotlib.

Agg is the backend (no display, no GUI toolkit), and the SVG writer turns text into paths drawn from matplotlib's
bundled DejaVu fonts, so a plot needs no font and fetches nothing when the report is opened. The writer's RDF
metadata block (which names licence and type URIs) is left out, and so is the XML prologue, which is not HTML.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otprobe.report.facts import Timeline

_PROLOGUE = re.compile(r"^.*?(?=<svg\b)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_REFERENCE = re.compile(r'(\bid="|\bhref="#|url\(#)')
_EMPTY_PATH = re.compile(r"<path (?![^>]*\bd=)")  # a blank glyph (the space) has no outline
_COLORS = ("#1f5fa8", "#d9822b")
_CAP_STYLES = ("--", ":")


def timeline_svg(timeline: Timeline, prefix: str) -> str:
    """One step plot: packets in the trailing 1 s per series against horizontal cap lines.

    Every id in it (glyphs, clip paths, lines) and every reference to one starts with `prefix`: several plots share
    one HTML document, and matplotlib numbers each plot's ids from the same start."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.6), dpi=96)
    axes = figure.add_subplot()
    for color, (label, points) in zip(_COLORS, timeline.series.items(), strict=False):
        axes.step([t for t, _ in points], [n for _, n in points], where="post", color=color, label=label,
                  linewidth=1.2)
    for style, (label, cap) in zip(_CAP_STYLES, timeline.caps.items(), strict=False):
        axes.axhline(cap, color="#b3261e", linestyle=style, linewidth=1.2, label=f"{label} ({cap} in any 1 s)")
    axes.set_title(timeline.title, fontsize=10, loc="left")
    axes.set_xlabel("seconds since the scan began", fontsize=9)
    axes.set_ylabel("packets", fontsize=9)
    highest = max([*timeline.caps.values(), *(n for points in timeline.series.values() for _, n in points), 1])
    axes.set_ylim(0, highest * 1.15)  # the cap lines clear of the frame
    axes.set_xlim(0, timeline.span_s)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    out = io.StringIO()
    # svg.hashsalt: the same plot gives the same clip-path ids, so a report is reproducible byte for byte
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "otprobe"}):
        figure.savefig(out, format="svg", metadata={"Date": None})
    svg = _METADATA.sub("", _PROLOGUE.sub("", out.getvalue(), count=1), count=1)
    svg = _REFERENCE.sub(lambda match: match[1] + prefix, svg)
    return _EMPTY_PATH.sub('<path d="" ', svg)  # HTML's SVG requires the attribute
