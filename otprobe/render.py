"""Everything a person sees: tables, progress and one-line errors. The only module that imports rich.

Machine output (`--format json`) goes to stdout only; everything else (logs, progress, summaries
around tables) goes to stderr, so `otprobe scan ... --format json | jq` works.

Vendor, model and name strings come from the devices, and a device can put terminal control sequences in them.
Every text a person reads passes `visible` here, whatever the terminal (tty, pipe, NO_COLOR); JSON output keeps
the exact string, which json.dumps escapes itself.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

from otprobe.model import Observation, Status

if TYPE_CHECKING:  # annotations only: importing the inventory package opens its store and the probe registry
    from otprobe.inventory.store import AssetRecord, ScanRecord


def console(stderr: bool = False) -> Console:
    # NO_COLOR means no escape code at all (rich's no_color alone keeps bold and italics); piped output gets plain
    # text at a width that keeps one device per line.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 200
    # emoji=False: a device's ":warning:" stays text, like its "[red]" (see _table)
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=stderr, highlight=False, soft_wrap=False, no_color=plain, emoji=False,
                   color_system=None if plain else "auto", width=width)


out = console()
err = console(stderr=True)


# A terminal obeys control characters: ESC[2J clears the screen, ESC]0;... retitles the window, ESC[8m hides what
# follows, U+009B is a one-character CSI to some terminals, a newline forges a table row. rich removes only BEL, BS,
# CR, VT and FF, so every C0 and C1 control and DEL is shown as \xNN, and the Unicode line separators and
# bidirectional overrides (which reorder the text around them on screen) as \uNNNN. A backslash a device sent
# stays as it is: vendor names are read far more often than they are forged.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    r"""`text` with every control character spelled out: a device's ESC [ 2 J is shown as `\x1b[2J`."""
    return _UNSAFE.sub(_escape, text)


def error_line(message: str) -> None:
    # one line whatever the terminal width (a dumb terminal is 80 columns), so logs and grep see it whole
    err.print(visible(f"otprobe: error: {message}"), markup=False, soft_wrap=True)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        err.print(visible(message), markup=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """`1 packet`, `2 packets`: every count a person reads agrees with its noun."""
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"


def _text(value: Any, style: str = "") -> Text:
    # Cells hold what devices said about themselves: a Text is never parsed as rich markup, so a vendor
    # "ACME [/x] Corp" prints as written instead of raising MarkupError or restyling the table.
    return Text("" if value is None else visible(str(value)), style=style)


def _cell(value: Any) -> Text:
    return value if isinstance(value, Text) else _text(value)  # a Text here was made by _text


# --- tables that fit the terminal ------------------------------------------------------------------------------
#
# A table never wraps a cell: an address, an id or a version split over two lines can be neither read nor copied.
# Each column is either fixed (ids, addresses, versions, codes, times, counts: always whole) or free text (vendor,
# model, notes: cut with an ellipsis to fit). When even that does not fit, the columns least needed are left out, in
# the order each table declares, and stderr says which; `--wide` shows every column whole.

_MIN_TEXT = 8  # a free-text column narrower than this says nothing
_ELLIPSIS = "…"


@dataclass(frozen=True)
class Column:
    header: str
    fixed: bool = False  # shown whole, never cut or wrapped
    drop: int = 0  # on a narrow terminal, the column with the highest `drop` goes first; 0 always stays


def _cells(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def terminal_width() -> int:
    """The width tables are fitted to: $COLUMNS when set (as rich reads it), else the console's."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else out.width


def _layout(columns: Sequence[Column], natural: Sequence[int], wide: bool) -> dict[int, int]:
    """Column index -> width for the columns shown: natural widths with `wide`, else fitted to the terminal."""
    if wide:
        return dict(enumerate(natural))
    budget = terminal_width()

    def least(i: int) -> int:
        return natural[i] if columns[i].fixed else min(natural[i], max(_MIN_TEXT, min(len(columns[i].header), 12)))

    def needed(shown: Sequence[int]) -> int:
        return sum(least(i) for i in shown) + 3 * len(shown) + 1  # "│ " before each cell, " " after, a last "│"

    shown = list(range(len(columns)))
    for i in sorted((i for i in shown if columns[i].drop), key=lambda i: -columns[i].drop):
        if needed(shown) <= budget:
            break
        shown.remove(i)
    widths = {i: least(i) for i in shown}
    spare = budget - needed(shown)
    # the spare room goes to the free text, the shortest first: a short column is whole before a long one grows
    text = sorted((i for i in shown if not columns[i].fixed), key=lambda i: natural[i])
    for n, i in enumerate(text):
        grow = min(natural[i] - widths[i], max(spare, 0) // (len(text) - n))
        widths[i] += grow
        spare -= grow
    return widths


def _hidden_note(columns: Sequence[Column], widths: dict[int, int]) -> None:
    hidden = [c.header for i, c in enumerate(columns) if i not in widths]
    if hidden:
        info(f"{plural(len(hidden), 'column')} left out at {terminal_width()} characters wide ({', '.join(hidden)}): "
             "--wide shows every column")


def _natural(columns: Sequence[Column], rows: Sequence[Sequence[Text]]) -> list[int]:
    return [max([_cells(c.header), *(_cells(row[i].plain) for row in rows)]) for i, c in enumerate(columns)]


def _title(title: str) -> None:
    # a line of its own, never wrapped: titles carry scan ids
    out.print(_text(title, "italic"), soft_wrap=True)


def fitted_table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]], wide: bool = False) -> None:
    """A table of rows that are all at hand (scan results, one asset, scans, a plan), fitted as above."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = _layout(columns, _natural(columns, cells), wide)
    table = Table(show_lines=False)
    for i, width in widths.items():
        table.add_column(columns[i].header, width=width, no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(row[i] for i in widths))
    _title(title)
    out.print(table, width=sum(widths.values()) + 3 * len(widths) + 1, crop=False)
    _hidden_note(columns, widths)


def _fit(text: str, width: int, fixed: bool) -> str:
    size = _cells(text)
    if size > width and not fixed:  # free text is cut; a fixed cell wider than planned stays whole
        text = (text[: width - 1] if text.isascii() else set_cell_size(text, width - 1)) + _ELLIPSIS
        size = width
    return text + " " * max(width - size, 0)


def streamed_table(title: str, columns: Sequence[Column], natural: Sequence[int], rows: Iterable[Sequence[Any]],
                   wide: bool = False) -> None:
    """A table of any number of rows, printed as they come: the columns are fixed before the first row from
    `natural` (the widest value of each column, or a fair guess), so memory and time stay flat; a rich Table would
    hold every row. Drawn like `fitted_table`, without styles."""
    widths = _layout(columns, [max(n, _cells(c.header)) for c, n in zip(columns, natural, strict=True)], wide)
    # --wide cuts nothing: a value longer than a guessed width pushes its line out rather than lose its end
    shown = [(i, widths[i], columns[i].fixed or wide) for i in widths]

    def line(left: str, middle: str, right: str, fill: str) -> str:
        return left + middle.join(fill * (w + 2) for _, w, _ in shown) + right + "\n"

    _title(title)
    write = sys.stdout.write
    write(line("┏", "┳", "┓", "━"))
    write("┃" + "┃".join(f" {_fit(columns[i].header, w, False)} " for i, w, _ in shown) + "┃\n")
    write(line("┡", "╇", "┩", "━"))
    batch: list[str] = []
    for row in rows:
        texts = ["" if row[i] is None else str(row[i]) for i, _, _ in shown]
        joined = "".join(texts)
        if joined.isascii() and _UNSAFE.search(joined) is None:  # nearly every row: as wide as long, nothing to escape
            cells = [t.ljust(w) if fixed or len(t) <= w else t[: w - 1] + _ELLIPSIS
                     for t, (_, w, fixed) in zip(texts, shown, strict=True)]
        else:
            cells = [_fit(visible(t), w, fixed) for t, (_, w, fixed) in zip(texts, shown, strict=True)]
        batch.append("│ " + " │ ".join(cells) + " │\n")
        if len(batch) == 1000:
            write("".join(batch))
            batch.clear()
    write("".join(batch))
    write(line("└", "┴", "┘", "─"))
    sys.stdout.flush()
    _hidden_note(columns, widths)


# --- the tables ---------------------------------------------------------------------------------------------------

_STATUS_STYLE = {Status.IDENTIFIED: "green", Status.NO_IDENTITY: "yellow", Status.EXCLUDED: "dim"}
# When a device gave no identity, the most telling of its per-protocol results is shown.
_STATUS_ORDER = (Status.IDENTIFIED, Status.NO_IDENTITY, Status.PROTOCOL_ERROR, Status.TRIPPED, Status.TIMEOUT,
                 Status.RESET, Status.ABORTED, Status.EXCLUDED, Status.REFUSED)


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ip.split("."))


# a device without identity has only its note to say why: it goes before vendor and serial on a narrow terminal
OBSERVATION_COLUMNS = (
    Column("ip", fixed=True), Column("status", fixed=True), Column("firmware", fixed=True, drop=1),
    Column("model", drop=2), Column("note", drop=3), Column("vendor", drop=4), Column("serial", fixed=True, drop=5),
    Column("type", fixed=True, drop=6), Column("class", fixed=True, drop=7), Column("answered", drop=8),
    Column("product code", fixed=True, drop=9),
)


def observations_table(observations: Sequence[Observation], wide: bool = False) -> None:
    """One row per device: the identity from the protocols that answered, or why none did."""
    by_ip: dict[str, list[Observation]] = {}
    for o in observations:
        by_ip.setdefault(o.target, []).append(o)
    rows = []
    for ip in sorted(by_ip, key=_ip_key):
        group = sorted(by_ip[ip], key=lambda o: _STATUS_ORDER.index(o.status))
        best = group[0]
        found = [o for o in group if o.identity is not None]
        i = found[0].identity if found else None
        style = _STATUS_STYLE.get(best.status, "red")
        via = ", ".join(f"{o.protocol}/{o.port}" for o in group if o.status in (Status.IDENTIFIED, Status.NO_IDENTITY))
        note = "" if found else "; ".join(sorted({o.error for o in group
                                                  if o.error and o.status is not Status.REFUSED}))
        rows.append((ip, _text(best.status, style), i and i.firmware, i and (i.model or i.product_name), note,
                     i and i.vendor, i and i.serial, i and i.asset_type, best.device_class, via, i and i.product_code))
    fitted_table(f"Devices ({plural(len(rows), 'device')})", OBSERVATION_COLUMNS, rows, wide)


def _serial(asset: AssetRecord) -> Text:
    # a serial several devices report identifies none of them: said next to it, wherever it is shown
    if asset.duplicate_serial:
        return _text(f"{asset.serial} (duplicate serial)", "yellow")
    return _text(asset.serial)


ASSET_COLUMNS = (
    Column("asset", fixed=True), Column("site", fixed=True), Column("ip", fixed=True),
    Column("firmware", fixed=True, drop=1),
    Column("model", drop=2), Column("type", fixed=True, drop=3), Column("vendor", drop=4),
    Column("serial", fixed=True, drop=5), Column("state", fixed=True, drop=6), Column("class", fixed=True, drop=7),
    Column("product code", fixed=True, drop=8), Column("protocols", drop=9), Column("last seen", fixed=True, drop=10),
)
_DUPLICATE = " (duplicate serial)"


def _asset_row(a: AssetRecord, serial: Any) -> tuple[Any, ...]:
    return (a.id, a.site, a.ip, a.firmware, a.model, a.asset_type, a.vendor, serial, a.cpu_state, a.device_class,
            a.product_code, " ".join(sorted(a.protocols)), a.last_seen[:16].replace("T", " "))


def _asset_columns(with_state: bool, with_site: bool) -> list[int]:
    # the CPU state column only where some scan read a state: most profiles never ask for it; the site only where
    # the assets are of several (an address means something only within its site)
    shown = {"state": with_state, "site": with_site}
    return [i for i, c in enumerate(ASSET_COLUMNS) if shown.get(c.header, True)]


def assets_table(assets: Sequence[AssetRecord], title: str = "Inventory", wide: bool = False) -> None:
    """A few assets (the demo's), styled; `stream_assets` prints any number."""
    keep = _asset_columns(any(a.cpu_state for a in assets), len({a.site for a in assets}) > 1)
    rows = [_asset_row(a, _serial(a)) for a in assets]
    fitted_table(title, [ASSET_COLUMNS[i] for i in keep], [[row[i] for i in keep] for row in rows], wide)


def stream_assets(title: str, assets: Iterable[AssetRecord], widths: dict[str, int], wide: bool = False) -> None:
    """Any number of assets as a table, as they are read. `widths` is the store's `asset_widths` for them."""
    natural = (widths["id"], widths["site"], widths["ip"], widths["firmware"], widths["model"], widths["asset_type"],
               widths["vendor"], widths["serial"] + (len(_DUPLICATE) if widths["duplicate_serial"] else 0),
               widths["cpu_state"], widths["device_class"],
               widths["product_code"], 20, 16)  # protocols: a fair guess; last seen: minutes
    keep = _asset_columns(widths["cpu_state"] > 0, widths["sites"] > 1)
    rows = (_asset_row(a, f"{a.serial}{_DUPLICATE}" if a.duplicate_serial else a.serial) for a in assets)
    streamed_table(title, [ASSET_COLUMNS[i] for i in keep], [natural[i] for i in keep],
                   ([row[i] for i in keep] for row in rows), wide)


_DETAIL = (Column("field", fixed=True), Column("value"))
_HISTORY = (Column("scan", fixed=True), Column("value", fixed=True), Column("seen", fixed=True, drop=1))
_EVENTS = (Column("scan", fixed=True), Column("event", fixed=True), Column("old", drop=1), Column("new"),
           Column("at", fixed=True, drop=2))


def _when(stamp: str | None) -> str | None:
    return stamp[:16].replace("T", " ") if stamp else stamp


def asset_detail(asset: AssetRecord, history: dict[str, list[dict[str, Any]]], wide: bool = False) -> None:
    fields = [("asset", asset.id), ("site", asset.site), ("address", asset.ip), ("type", asset.asset_type),
              ("class", f"{asset.device_class} (pacing)"), ("vendor", asset.vendor), ("model", asset.model),
              ("product code", asset.product_code), ("serial", _serial(asset)), ("firmware", asset.firmware),
              ("hardware", asset.hardware_version),
              ("protocols", ", ".join(f"{p}/{port}" for p, port in sorted(asset.protocols.items()))),
              ("first seen", asset.first_seen), ("last seen", asset.last_seen)]
    if asset.cpu_state:
        fields.insert(4, ("CPU state", asset.cpu_state))
    fields += [(f"conflict: {name}", ", ".join(f"{p}={v!r}" for p, v in value.items()))
               for name, value in asset.conflicts.items()]
    fitted_table(f"Asset {asset.id}", _DETAIL, fields, wide)
    fitted_table("Firmware history", (_HISTORY[0], Column("firmware", fixed=True), _HISTORY[2]),
                 [(h["scan_id"], h["firmware"], _when(h["observed_at"])) for h in history["firmware"]], wide)
    fitted_table("Address history", (_HISTORY[0], Column("ip", fixed=True), _HISTORY[2]),
                 [(h["scan_id"], h["ip"], _when(h["observed_at"])) for h in history["addresses"]], wide)
    fitted_table("Events", _EVENTS,
                 [(h["scan_id"], h["kind"], h["old"], h["new"], _when(h["at"])) for h in history["events"]], wide)


def _plan_cells(s: ScanRecord) -> tuple[str | None, str | None]:
    """Took and packets of a scan, each against its plan when the scan recorded one."""
    took = None
    if s.ended_at:
        seconds = (datetime.fromisoformat(s.ended_at) - datetime.fromisoformat(s.started_at)).total_seconds()
        took = f"{seconds:.1f} s"
    expected, worst = s.counts.get("plan_expected_s"), s.counts.get("plan_worst_s")
    planned = s.counts.get("plan_packets")
    if expected is not None:
        took = f"{took or '-'} / {float(expected):.1f} s" + (f" (worst {float(worst):.1f} s)" if worst else "")
    packets = None if s.packets is None else str(s.packets)
    if planned is not None:
        packets = f"{packets or '-'} / {int(planned)}"
    return took, packets


_SCAN_COLUMNS = (
    Column("scan", fixed=True), Column("status", fixed=True), Column("started", fixed=True, drop=1),
    Column("targets", fixed=True, drop=4), Column("took", fixed=True, drop=2), Column("packets", fixed=True, drop=3),
    Column("not covered", fixed=True, drop=6), Column("profile", drop=5), Column("results", drop=7),
    Column("resumes", fixed=True, drop=8),
)


def scans_table(scans: Sequence[ScanRecord], wide: bool = False) -> None:
    planned = any("plan_packets" in s.counts or "plan_expected_s" in s.counts for s in scans)
    columns = list(_SCAN_COLUMNS)
    if planned:  # actual against planned, where the scans recorded a plan
        columns[4], columns[5] = Column("took / planned", fixed=True, drop=2), Column("packets / planned",
                                                                                      fixed=True, drop=3)
    rows = [(s.id, s.status, _when(s.started_at), len(s.targets), *_plan_cells(s), len(s.not_covered), s.profile,
             ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()) if not k.startswith("plan_")), s.resumes)
            for s in scans]
    if len({s.site for s in scans}) > 1:  # scans of several sites (a central inventory): which is whose
        columns.insert(1, Column("site", fixed=True))
        rows = [(row[0], s.site, *row[1:]) for row, s in zip(rows, scans, strict=True)]
    fitted_table(f"Scans ({plural(len(rows), 'scan')})", columns, rows, wide)


_DIFF_COLUMNS = (Column("change", fixed=True), Column("ip", fixed=True), Column("asset", fixed=True),
                 Column("old", drop=1), Column("new"))


def stream_diff(comparison: str, changes: Iterable[Any], wide: bool = False) -> Counter[str]:
    """The changes as they are found, and a count per kind on stderr; returns the counts."""
    counts: Counter[str] = Counter()
    pending = iter(changes)
    first = next(pending, None)
    if first is None:
        _title(comparison)
        out.print("no changes", soft_wrap=True)
        return counts

    def rows() -> Iterator[tuple[Any, ...]]:
        for c in itertools.chain([first], pending):
            counts[c.kind] += 1
            yield c.kind, c.ip, c.asset_id, c.old, c.new

    # ids and kinds are fixed by their vocabulary; old and new are labels or versions, guessed generously
    streamed_table(comparison, _DIFF_COLUMNS, (16, 15, 12, 32, 32), rows(), wide)
    info(f"{plural(sum(counts.values()), 'change')}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())))
    return counts


def generic_table(title: str, columns: Sequence[str | Column], rows: Iterable[Sequence[Any]],
                  wide: bool = False) -> None:
    fitted_table(title, [c if isinstance(c, Column) else Column(c) for c in columns], rows, wide)


def duration(seconds: float) -> str:
    """h:mm:ss, the way a person reads a scan's length."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class ScanProgress:
    """Scan progress on stderr: on a terminal a live bar (over the (address, probe) jobs done) with the addresses done
    of total, devices found, packets, the rate against the global cap, elapsed and the expected time left; elsewhere
    a plain line every `every_s` seconds, so that a log shows the scan moving; nothing when disabled (--quiet).

    `update` takes an `otprobe.scan.Progress`; the ETA in it comes from the pacing model over the work left.
    """

    def __init__(self, enabled: bool, every_s: float = 30.0) -> None:
        self._enabled = enabled
        self._every_s = every_s
        self._last_line = 0.0  # the first plain line after `every_s`: a short scan prints none
        self._live: Any = None
        self._bar: Any = None
        if enabled and err.is_terminal:
            from rich.live import Live  # local: only scans on a terminal pay for it
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(BarColumn(bar_width=20), TextColumn("{task.description}"), console=err,
                                 transient=True)
            self._task = self._bar.add_task("", total=1)
            self._live = Live(self._bar, console=err, transient=True, refresh_per_second=4)

    def __enter__(self) -> ScanProgress:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    @staticmethod
    def line(progress: Any, elapsed_s: float) -> str:
        return (f"{progress.addresses_done}/{plural(progress.addresses, 'address', 'addresses')}, "
                f"{plural(progress.devices_found, 'device')} found, "
                f"{plural(progress.packets, 'packet')}, {progress.rate_pps:.1f}/{progress.cap_pps:g} pps, elapsed "
                f"{duration(elapsed_s)}, about {duration(progress.eta_s)} left")

    @staticmethod
    def short(progress: Any, elapsed_s: float) -> str:
        """The bar's text: short enough for an 80-column terminal beside a 20-column bar."""
        return (f"{progress.addresses_done}/{progress.addresses} addr  {progress.devices_found} dev  "
                f"{progress.packets} pkt  {progress.rate_pps:.1f}/{progress.cap_pps:g} pps  {duration(elapsed_s)}  "
                f"ETA {duration(progress.eta_s)}")

    def update(self, progress: Any, elapsed_s: float) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=progress.jobs_done, total=max(progress.jobs, 1),
                             description=self.short(progress, elapsed_s))
        elif elapsed_s - self._last_line >= self._every_s:
            self._last_line = elapsed_s
            info(self.line(progress, elapsed_s))


def scan_summary(summary: dict[str, Any]) -> None:
    err.print(
        "scan {scan_id}: {status}; {packets} in {elapsed_s:.1f} s (plan: at most {planned_packets}); "
        "identified {identified}, tripped {tripped}, not covered {not_covered}, excluded {excluded}".format(
            **{**summary, "packets": plural(summary["packets"], "packet")}),
        markup=False, soft_wrap=True,
    )


_PLAN_COLUMNS = (Column("class", fixed=True), Column("addresses", fixed=True),
                 Column("worst-case packets", fixed=True), Column("worst case takes at least", fixed=True, drop=1))


def plan_table(rows: Sequence[Sequence[Any]], total: Sequence[Any]) -> None:
    fitted_table("Scan plan (no packet sent)", _PLAN_COLUMNS, [*rows, total])
