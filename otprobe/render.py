"""Everything a person sees: tables, progress and one-line errors. The only module that imports rich.

Machine output (`--format json`) goes to stdout only; everything else (logs, progress, summaries
around tables) goes to stderr, so `otprobe scan ... --format json | jq` works.

Vendor, model and name strings come from the devices, and a device can put terminal control sequences in them.
Every text a person reads passes `visible` here, whatever the terminal (tty, pipe, NO_COLOR); JSON output keeps
the exact string, which json.dumps escapes itself.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

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


def _text(value: Any, style: str = "") -> Text:
    # Cells hold what devices said about themselves: a Text is never parsed as rich markup, so a vendor
    # "ACME [/x] Corp" prints as written instead of raising MarkupError or restyling the table.
    return Text("" if value is None else visible(str(value)), style=style)


def _cell(value: Any) -> Text:
    return value if isinstance(value, Text) else _text(value)  # a Text here was made by _text


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=_text(title), title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


_STATUS_STYLE = {Status.IDENTIFIED: "green", Status.NO_IDENTITY: "yellow", Status.EXCLUDED: "dim"}
# When a device gave no identity, the most telling of its per-protocol results is shown.
_STATUS_ORDER = (Status.IDENTIFIED, Status.NO_IDENTITY, Status.PROTOCOL_ERROR, Status.TRIPPED, Status.TIMEOUT,
                 Status.RESET, Status.ABORTED, Status.EXCLUDED, Status.REFUSED)


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ip.split("."))


def observations_table(observations: Sequence[Observation]) -> None:
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
        rows.append((ip, best.device_class, _text(best.status, style), via, i and i.vendor,
                     i and (i.model or i.product_name), i and i.product_code, i and i.firmware, i and i.serial, note))
    out.print(_table("Devices", ("ip", "class", "status", "answered", "vendor", "model", "order/product code",
                                 "firmware", "serial", "note"), rows))


def _serial(asset: AssetRecord) -> Text:
    # a serial several devices report identifies none of them: said next to it, wherever it is shown
    if asset.duplicate_serial:
        return _text(f"{asset.serial} (duplicate serial)", "yellow")
    return _text(asset.serial)


def assets_table(assets: Sequence[AssetRecord], title: str = "Inventory") -> None:
    rows = [(a.id, a.ip, a.device_class, a.vendor, a.model, a.product_code, a.firmware, _serial(a),
             " ".join(sorted(a.protocols)), a.last_seen[:16].replace("T", " ")) for a in assets]
    out.print(_table(title, ("asset", "ip", "class", "vendor", "model", "order/product code", "firmware", "serial",
                             "protocols", "last seen"), rows))


def asset_detail(asset: AssetRecord, history: dict[str, list[dict[str, Any]]]) -> None:
    fields = [("asset", asset.id), ("address", asset.ip), ("class", asset.device_class), ("vendor", asset.vendor),
              ("model", asset.model), ("order/product code", asset.product_code), ("serial", _serial(asset)),
              ("firmware", asset.firmware), ("hardware", asset.hardware_version),
              ("protocols", ", ".join(f"{p}/{port}" for p, port in sorted(asset.protocols.items()))),
              ("first seen", asset.first_seen), ("last seen", asset.last_seen)]
    out.print(_table(f"Asset {asset.id}", ("field", "value"), fields))
    for name, value in asset.conflicts.items():
        out.print(_text(f"conflict: {name}: " + ", ".join(f"{p}={v!r}" for p, v in value.items())))
    out.print(_table("Firmware history", ("scan", "firmware", "seen"),
                     [(h["scan_id"], h["firmware"], h["observed_at"]) for h in history["firmware"]]))
    out.print(_table("Address history", ("scan", "ip", "seen"),
                     [(h["scan_id"], h["ip"], h["observed_at"]) for h in history["addresses"]]))
    out.print(_table("Events", ("scan", "event", "old", "new", "at"),
                     [(h["scan_id"], h["kind"], h["old"], h["new"], h["at"]) for h in history["events"]]))


def scans_table(scans: Sequence[ScanRecord]) -> None:
    rows = [(s.id, s.profile, s.started_at, s.ended_at, s.status, len(s.targets), len(s.not_covered),
             ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))) for s in scans]
    out.print(_table("Scans", ("scan", "profile", "started", "ended", "status", "targets", "not covered",
                               "results"), rows))


def diff_table(diff: dict[str, Any]) -> None:
    rows = [(c["kind"], c["ip"], c["asset_id"], c["old"], c["new"]) for c in diff["changes"]]
    since = f"from scan {diff['from']}" if diff["from"] else "(no earlier scan: everything is new)"
    out.print(_table(f"Changes {since} to scan {diff['to']}", ("change", "ip", "asset", "old", "new"), rows))
    if not rows:
        out.print("no changes")


def generic_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    out.print(_table(title, columns, rows))


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
        return (f"{progress.addresses_done}/{progress.addresses} addresses, {progress.devices_found} devices found, "
                f"{progress.packets} packets, {progress.rate_pps:.1f}/{progress.cap_pps:g} pps, elapsed "
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
        "scan {scan_id}: {status}; {packets} packets in {elapsed_s:.1f} s (plan: at most {planned_packets}); "
        "identified {identified}, tripped {tripped}, not covered {not_covered}, excluded {excluded}".format(**summary),
        markup=False, soft_wrap=True,
    )


def plan_table(rows: Sequence[Sequence[Any]], total: Sequence[Any]) -> None:
    columns = ("class", "addresses", "worst-case packets", "worst case takes at least")
    out.print(_table("Scan plan (no packet sent)", columns, [*rows, total]))
