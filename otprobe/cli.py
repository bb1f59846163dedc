"""The `otprobe` command line: parse, call the library, render, map domain errors to exit codes.

No protocol or pacing logic lives here. Exit codes (documented in the README and tested):
0 success; 1 changes found (`inventory diff`) or a broken chain (`audit verify`); 2 usage or profile error;
3 refused (outside every maintenance window, a target outside the scope, another scan running, or a probe plugin
declaring a code off the read-only allowlist);
4 incomplete (deadline or interrupt); 5 any other error (inventory, audit log that cannot be read or written, I/O).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from contextlib import closing as _closing
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

from otprobe import render
from otprobe.errors import (
    AuditError,
    InventoryError,
    OtprobeError,
    PolicyViolation,
    ProfileError,
    ScanAborted,
    ScanLocked,
    ScopeError,
    TargetError,
    WindowError,
)
from otprobe.probes import names as probe_names

if TYPE_CHECKING:
    from otprobe.inventory import Store


class Exit(IntEnum):
    OK = 0
    CHANGES = 1
    USAGE = 2
    REFUSED = 3
    INCOMPLETE = 4
    ERROR = 5


_EXIT_FOR: tuple[tuple[type[OtprobeError], Exit], ...] = (
    (ProfileError, Exit.USAGE),
    (TargetError, Exit.USAGE),  # before its base ScopeError: a target that cannot be parsed is not a refusal
    (ScopeError, Exit.REFUSED),
    (WindowError, Exit.REFUSED),
    (ScanLocked, Exit.REFUSED),
    (PolicyViolation, Exit.REFUSED),  # a probe declaring a code off the allowlist, refused before any packet
    (ScanAborted, Exit.INCOMPLETE),
    (AuditError, Exit.ERROR),  # the log cannot be used; a broken chain is `audit verify`'s own exit 1
    (InventoryError, Exit.ERROR),
)


class Format(StrEnum):
    table = "table"
    json = "json"


class EmptyHosts(StrEnum):
    refuse = "refuse"
    drop = "drop"


class ScanFormat(StrEnum):
    table = "table"
    json = "json"  # one document, otprobe/data/scan.schema.json
    jsonl = "jsonl"  # one line per device and protocol


class ReportFormat(StrEnum):
    html = "html"
    markdown = "markdown"
    json = "json"


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"
    cyclonedx = "cyclonedx"


def fail(exc: OtprobeError) -> typer.Exit:
    """One clear line on stderr and the exit code of the error's branch."""
    render.error_line(str(exc))
    code = next((code for kind, code in _EXIT_FOR if isinstance(exc, kind)), Exit.ERROR)
    return typer.Exit(int(code))


_VERBOSE = re.compile(r"-v+|--verbose")


def _verbose_first(args: list[str]) -> list[str]:
    """`-v`, `-vv` and `--verbose` moved before the command, wherever they were typed (`otprobe scan ... -v`): the
    option is the top-level group's, and a command does not know it. `sim` passes its arguments on untouched, and
    nothing after `--` is an option."""
    if "sim" in args:
        return args
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if _VERBOSE.fullmatch(a)]
    return [*flags, *(a for a in args[:end] if not _VERBOSE.fullmatch(a)), *args[end:]]


class _LastResort(TyperGroup):
    """The top-level group: an exception no command expected is one error line and exit 5, not a traceback."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _verbose_first(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, BrokenPipeError):
            raise  # typer's own control flow (exit codes, usage errors, Ctrl-C, a closed pipe) stays typer's
        except OtprobeError as exc:  # every command's domain errors: one line, the branch's exit code
            raise fail(exc) from None
        except Exception as exc:
            logging.getLogger(__name__).debug("unexpected error", exc_info=True)  # -vv shows the traceback
            render.error_line(f"{type(exc).__name__}: {exc}")
            raise typer.Exit(int(Exit.ERROR)) from None


if os.environ.get("NO_COLOR"):
    import typer.rich_utils

    # help and usage errors too: no escape code at all, as in render (rich keeps bold under no_color)
    typer.rich_utils.COLOR_SYSTEM = None

app = typer.Typer(
    help="otprobe: paced, read-only identity and firmware inventory for OT networks.\n\n"
    "Example: otprobe scan 127.0.1.0/24 --profile lab",
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell (docs/cli.md)
    add_completion=True,
    cls=_LastResort,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
inventory_app = typer.Typer(help="Read the asset inventory.\n\nExample: otprobe inventory list --vendor Siemens",
                            no_args_is_help=True)
scans_app = typer.Typer(help="List past scans.\n\nExample: otprobe scans list", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
app.add_typer(scans_app, name="scans")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Inventory file, or a postgresql:// URL of a central inventory (default: $OTPROBE_DB, "
                 "the config file's db, else ~/.local/share/otprobe/inventory.db).", show_default=False),
]


def _site(value: str | None) -> str | None:
    from otprobe.inventory.sites import check_site

    try:
        return check_site(value) if value is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--site") from None


def _sensor_site(option: str | None, profile_site: str | None = None) -> str:
    """The site a sensor writes to (`sites.sensor_site`); a bad name from the environment or the config file is a
    usage error too."""
    from otprobe.inventory.sites import sensor_site

    try:
        return sensor_site(option, profile_site)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc} (from --site, the profile, $OTPROBE_SITE or the config file)",
                                 param_hint="--site") from None


SiteOption = Annotated[
    str | None,
    typer.Option("--site", callback=_site, help="Only this site, of a central inventory or a file (default: "
                 "$OTPROBE_SITE, else every site).", show_default=False),
]


# The inventory is imported by the commands that use it, not here: `otprobe --help` and the commands that only
# read profiles start faster without it; SQLAlchemy only for a central inventory.
def open_store(db: str | None, site: str | None = None, *, create: bool = False) -> Store:
    """The SQLite inventory file, or the central inventory when the database setting is a postgresql:// URL, read
    for `site`, else $OTPROBE_SITE, else every site (a file records its scans' sites as a central database does).
    Only a scan creates a file: for a read command a missing one is an error (exit 5), never created empty. A read
    of a site the inventory holds no scan of is a usage error naming the sites it holds, not an empty answer that
    would look like an empty site."""
    from otprobe.inventory.database import database_setting, is_central

    setting = database_setting(db)
    site = site or _site(os.environ.get("OTPROBE_SITE") or None)
    store: Store
    if is_central(setting):
        from otprobe.inventory.central import CentralStore

        store = CentralStore(setting, site=site)
    else:
        from otprobe.inventory import SqliteStore, default_db_path

        store = SqliteStore(Path(setting) if setting else default_db_path(), create=create, site=site)
    if site is not None and not create and site not in (held := store.sites()):
        store.close()
        from otprobe.inventory.database import describe

        raise typer.BadParameter(f"{site!r}: {describe(db)} holds no scan of that site (its sites: "
                                 f"{', '.join(held) or 'none yet'})", param_hint="--site")
    return store


WideOption = Annotated[bool, typer.Option("--wide", help="Every column, each value whole (lines may be longer "
                                          "than the terminal).")]


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version  # only here: it costs every other command start-up time

        typer.echo(f"otprobe {version('otprobe')}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More log lines on stderr (-vv: debug).")]
    = 0,
    _version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="Print the installed version and exit.")] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@inventory_app.command("list")
def inventory_list(
    db: DbOption = None,
    vendor: Annotated[str | None, typer.Option(help="Only assets whose vendor contains this text.")] = None,
    device_class: Annotated[str | None, typer.Option("--class", help="Only this pacing class.")] = None,
    asset_type: Annotated[str | None, typer.Option("--type", help="Only this asset type (plc, drive, meter, ...: "
                                                   "what the device says it is).")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only assets that answered this protocol.")] = None,
    site: SiteOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    wide: WideOption = False,
) -> None:
    """List assets with firmware, type and pacing class, as they are read (any number of assets).

    Example: otprobe inventory list --type plc --vendor Siemens --site plant-a
    """
    from otprobe.inventory.store import AssetFilter
    from otprobe.model import ASSET_TYPES

    if asset_type is not None and asset_type not in ASSET_TYPES:
        raise typer.BadParameter(f"unknown asset type {asset_type!r} (known: {', '.join(ASSET_TYPES)})",
                                 param_hint="--type")
    where = AssetFilter(vendor=vendor, device_class=device_class, asset_type=asset_type, protocol=protocol)
    with _closing(open_store(db, site)) as store:
        if fmt is Format.json:
            from otprobe.inventory.export import write_json

            write_json(store.iter_asset_json(where), sys.stdout)
            return
        widths = store.asset_widths(where)
        if not widths["count"]:
            from otprobe.inventory.database import describe

            of_site = f" (site {site})" if site else ""
            render.info(f"no assets in {describe(db)}{of_site}" + (
                " match" if where != AssetFilter() else ": run `otprobe scan` (or `otprobe demo`) first"))
            return
        render.stream_assets(f"Inventory ({render.plural(widths['count'], 'asset')})",
                             store.iter_assets(where, details=False), widths, wide)


@inventory_app.command("show")
def inventory_show(
    asset: Annotated[str, typer.Argument(help="Asset id (or its prefix), address or serial.")],
    db: DbOption = None,
    site: SiteOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    wide: WideOption = False,
) -> None:
    """Show one asset with its firmware and address history.

    Example: otprobe inventory show 127.0.1.10
    """
    from dataclasses import asdict

    with _closing(open_store(db, site)) as store:
        record = store.asset(asset)
        history = store.history(record.id)
    if fmt is Format.json:
        render.print_json({**asdict(record), "history": history})
    else:
        render.asset_detail(record, history, wide)


@inventory_app.command("diff")
def inventory_diff(
    from_scan: Annotated[str | None, typer.Option("--from", help="Earlier scan id or its prefix (default: the last "
                                                  "one before --to of the same site, targets and protocols).")] = None,
    to_scan: Annotated[str | None, typer.Option("--to", help="Later scan id or its prefix (default: the latest "
                                                "finished scan).")] = None,
    db: DbOption = None,
    site: SiteOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    wide: WideOption = False,
) -> None:
    """What changed between two scans: new, missing, firmware changed, replaced, moved, duplicate serial.

    A device is missing only when the later scan was complete and asked its address over a protocol that identified
    it before. Exits 0 when nothing changed and 1 when something did, so cron and CI can alert on it.

    With --site, both scans are that site's.

    Example: otprobe inventory diff --from 20261207T0455 --format json
    """
    from otprobe.inventory.diff import iter_changes, pick_scans

    with _closing(open_store(db, site)) as store:
        pair = pick_scans(store, from_scan, to_scan)
        changes = iter_changes(store, pair.old, pair.new)
        old_id = pair.old.id if pair.old is not None else None
        if fmt is Format.json:
            changed = _diff_json(old_id, pair.new.id, pair.basis, changes)
        else:
            # the basis is on stdout with the changes, not on stderr, which cron mails even when nothing changed
            since = f"from scan {old_id}" if old_id else "(no earlier scan to compare with)"
            title = f"Changes {since} to scan {pair.new.id}: {pair.basis}"
            changed = bool(render.stream_diff(title, changes, wide))
    raise typer.Exit(int(Exit.CHANGES if changed else Exit.OK))


def _diff_json(old_id: str | None, new_id: str, basis: str, changes: Any) -> bool:
    """The diff as one JSON object on stdout, its changes written as they are found; whether there were any."""
    import json
    from dataclasses import asdict

    head = json.dumps({"from": old_id, "to": new_id, "basis": basis}, indent=2)
    sys.stdout.write(head[:-2] + ',\n  "changes": [')
    count = 0
    for count, change in enumerate(changes, 1):
        sys.stdout.write(("," if count > 1 else "") + "\n    " + json.dumps(asdict(change)))
    sys.stdout.write("\n  ]\n}\n" if count else "]\n}\n")
    return count > 0


@inventory_app.command("export")
def inventory_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="json, csv or cyclonedx (CycloneDX 1.6 JSON).")]
    = ExportFormat.json,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")]
    = None,
    db: DbOption = None,
    site: SiteOption = None,
) -> None:
    """Export the inventory, asset by asset (any number of assets), each naming its site.

    Example: otprobe inventory export --format cyclonedx -o plant.cdx.json
    """
    from functools import partial

    from otprobe.inventory.export import write_csv, write_cyclonedx, write_json

    with _closing(open_store(db, site)) as store:
        # each format reads the assets the cheapest way it can: JSON as the database builds it, CSV without the
        # identity it does not show
        assets = {ExportFormat.json: store.iter_asset_json, ExportFormat.csv: partial(store.iter_assets, details=False),
                  ExportFormat.cyclonedx: store.iter_assets}[fmt]
        write: Any = {ExportFormat.json: write_json, ExportFormat.csv: write_csv,
                      ExportFormat.cyclonedx: write_cyclonedx}[fmt]
        if output is None:
            write(assets(), sys.stdout)
            return
        # written beside the target and renamed at the end: a failed export leaves no half file under its name
        unfinished = output.with_name(output.name + ".partial")
        try:
            with unfinished.open("w", encoding="utf-8", newline="") as stream:
                write(assets(), stream)
            unfinished.replace(output)
        except OSError as exc:
            render.error_line(f"cannot write {output}: {exc.strerror or exc}")
            raise typer.Exit(int(Exit.ERROR)) from None
        finally:
            if unfinished.exists():  # only after a failure: a finished export was renamed
                unfinished.unlink()


@inventory_app.command("push")
def inventory_push(
    to: Annotated[str | None, typer.Option(
        "--to", show_default=False,
        help="postgresql:// URL of the central inventory (default: the config file's central).")] = None,
    db: Annotated[Path | None, typer.Option(
        "--db", show_default=False,
        help="The sensor's inventory file (default: $OTPROBE_DB when it names a file, else "
        "~/.local/share/otprobe/inventory.db).")] = None,
    site: Annotated[str | None, typer.Option(
        "--site", callback=_site, show_default=False,
        help="Site of the scans that ran without one (recorded as default); a scan that recorded a site goes to "
        "it (default: $OTPROBE_SITE, the config file's site, else default).")]
    = None,
    audit: Annotated[Path | None, typer.Option(
        help="Audit log whose chain heads go along (default: audit.jsonl beside the inventory).")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Send a sensor's scans to the central inventory: those it lacks, with observations and audit-chain heads.

    Repeated, it sends nothing and says so; interrupted, the next push sends the rest. The file is only read.

    Example: otprobe inventory push --to postgresql://sensor@127.0.0.1/otprobe --site plant-a
    """
    from otprobe.inventory import default_db_path
    from otprobe.inventory.central import CentralStore
    from otprobe.inventory.database import configured, is_central, redact
    from otprobe.inventory.push import push

    target = to or configured("central")
    if not target:
        raise typer.BadParameter("give the central inventory's URL (postgresql://...), or `central:` in the config "
                                 "file", param_hint="--to")
    if not is_central(target):
        raise typer.BadParameter(f"{redact(target)}: not a database URL (postgresql://...)", param_hint="--to")
    source = db or default_db_path()
    with _closing(CentralStore(target, site=_sensor_site(site))) as central:
        report = push(source, central, audit,
                      on_scan=lambda scan_id, n: render.info(f"sent scan {scan_id}: {render.plural(n, 'observation')}"))
        label = central.label
    if fmt is Format.json:
        render.print_json({"to": label, "site": central.write_site, **report.__dict__})
        return
    if report.sent:
        render.info(f"{render.plural(len(report.sent), 'scan')} sent to {label} (site {central.write_site}): "
                    f"{render.plural(report.observations, 'observation')}, "
                    f"{render.plural(report.heads, 'audit-chain head')}; {report.already} already there")
    else:
        render.info(f"nothing to send: {label} (site {central.write_site}) has all "
                    f"{render.plural(report.already, 'finished scan')}")
    if report.held_back:
        render.info(f"held back {render.plural(len(report.held_back), 'scan')} from {report.held_back[0]} on: that one "
                    "is still running (or was killed: any otprobe command on the file closes it); scans go in order")
    render.info(f"audit log: {report.audit}")


@inventory_app.command("firmware")
def inventory_firmware(
    db: DbOption = None,
    site: SiteOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Which firmware versions of each vendor's model run on how many devices, at which sites.

    Example: otprobe inventory firmware --db postgresql://reader@127.0.0.1/otprobe --site plant-a
    """
    from otprobe.inventory.fleet import firmware_summary, site_counts

    with _closing(open_store(db, site)) as store:
        # a central store counts in the database; a sensor's file is one site, its own
        counts = store.firmware_counts() if hasattr(store, "firmware_counts") else site_counts(store.assets())
    rows = firmware_summary(counts)
    if fmt is Format.json:
        render.print_json([row.as_dict() for row in rows])
        return
    render.generic_table(
        "Firmware by vendor and model", ("vendor", "model", "firmware", "devices", "sites"),
        [(r.vendor, r.model, r.firmware, r.devices, ", ".join(f"{site} {n}" for site, n in r.sites.items()))
         for r in rows])


@scans_app.command("list")
def scans_list(
    db: DbOption = None,
    site: SiteOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    wide: WideOption = False,
) -> None:
    """List scans with their status (complete, incomplete, interrupted, running), duration and packets, each against
    its plan when the scan recorded one.

    Example: otprobe scans list
    """
    with _closing(open_store(db, site)) as store:
        scans = store.scans()
    if fmt is Format.json:
        render.print_json([s.__dict__ for s in scans])
    else:
        render.scans_table(scans, wide)


# --- scanning ---------------------------------------------------------------------------------------------------

ProfileOption = Annotated[str, typer.Option("--profile", "-p", help="Shipped profile name or a profile file.")]
# The registered probes' names in --protocol's and --port's help are filled in when a command's help is shown
# (_ProbeHelp): finding the installed probes reads every installed package's metadata, which `otprobe --help` and
# the commands themselves need not pay for.
_PROBES, _LAST_PROBE = "<registered probes>", "<last probe>"


class _ProbeHelp(TyperCommand):
    """A command whose options' help names the registered probes."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        names = probe_names()
        for param in self.params:
            if param.help:
                param.help = param.help.replace(_PROBES, ",".join(names)).replace(_LAST_PROBE, names[-1])
        super().format_help(ctx, formatter)


ProtocolOption = Annotated[
    str | None,
    typer.Option("--protocol", help=f"Comma-separated subset of {_PROBES} (default: all enabled)."),
]
ScopeOption = Annotated[
    list[str] | None,
    typer.Option("--scope", help="Replace the profile's scope.include with this CIDR (repeatable); "
                 "scope.exclude still applies."),
]
PortOption = Annotated[
    list[str] | None,
    typer.Option("--port", help=f"Override a port, e.g. --port {_LAST_PROBE}=5020 (repeatable)."),
]


def _protocols(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _ports(values: list[str] | None) -> dict[str, int]:
    ports: dict[str, int] = {}
    for value in values or []:
        name, _, port = value.partition("=")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(f"{value!r}: expected PROTOCOL=PORT, e.g. {probe_names()[-1]}=5020",
                                     param_hint="--port")
        if name.strip() not in probe_names():  # a misspelt protocol would otherwise keep its default port, silently
            raise typer.BadParameter(f"{value!r}: unknown protocol {name.strip()!r} (known: "
                                     f"{', '.join(probe_names())})", param_hint="--port")
        ports[name.strip()] = int(port)
    return ports


def _prepare(profile_ref: str, targets: list[str], protocol: str | None, port: list[str] | None,
             scope: list[str] | None, **kw: Any) -> Any:
    from otprobe.profile import load_profile, recorded_ref
    from otprobe.scan import prepare

    try:
        profile = load_profile(profile_ref)
        return prepare(profile, recorded_ref(profile_ref), targets, protocols=_protocols(protocol), ports=_ports(port),
                       scope_include=scope, **kw)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--protocol") from None


@app.command(cls=_ProbeHelp)
def plan(
    targets: Annotated[list[str], typer.Argument(help="Hosts, CIDR blocks, ranges (a-b) or @file.")],
    profile: ProfileOption = "default",
    protocol: ProtocolOption = None,
    port: PortOption = None,
    scope: ScopeOption = None,
    expect_devices: Annotated[int | None, typer.Option(
        "--expect-devices", min=0, help="How many of the addresses you expect to hold a device (default: 10 %).",
        show_default=False)] = None,
    expect_empty: Annotated[EmptyHosts, typer.Option(
        "--expect-empty", help="How the other addresses behave: refuse (RST, the dearer) or drop (a firewall).")]
    = EmptyHosts.refuse,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Show what a scan would do, without sending a single packet.

    Lists addresses per class, the worst-case packets (retries and the device packet budget included) and the least
    time the caps allow for that worst case; then what to expect when --expect-devices of the addresses hold a
    device (the others empty), and whether each fits the profile's next maintenance window.

    Example: otprobe plan 127.0.1.0/24 --profile lab --expect-devices 20
    """
    from datetime import UTC, datetime

    from otprobe.windows import current_window, next_windows

    now = datetime.now(UTC)
    prepared = _prepare(profile, targets, protocol, port, scope, now=now, check_window=False,
                        expect_devices=expect_devices, expect_silent=1.0 if expect_empty is EmptyHosts.drop else 0.0)
    p = prepared.plan
    excluded = len(prepared.resolution.excluded)
    windows = prepared.profile.windows
    window = (current_window(windows, now) or next(iter(next_windows(windows, now, 1)), None)) if windows else None
    window_s = None if window is None else (window[1] - max(window[0], now)).total_seconds()
    fits = {"worst": None if window_s is None else p.worst_seconds <= window_s,
            "expected": None if window_s is None else p.expected_seconds <= window_s}
    if fmt is Format.json:
        render.print_json({
            "devices": p.devices, "excluded": excluded, "packets_per_device": p.packets_per_device,
            "total_packets": p.total_packets, "min_seconds": round(p.min_seconds, 3),
            "worst_seconds": round(p.worst_seconds, 3), "expected_devices": p.expected_devices,
            "expected_packets": p.expected_packets, "expected_seconds": round(p.expected_seconds, 3),
            "window": None if window is None else {"opens": window[0].isoformat(), "closes": window[1].isoformat(),
                                                   "worst_fits": fits["worst"], "expected_fits": fits["expected"]},
            "protocols": [probe.name for probe in prepared.probes],
            "classes": {k: {"devices": c.devices, "packets": c.packets, "min_seconds": round(c.min_seconds, 3)}
                        for k, c in p.classes.items()},
        })
        return
    rows = [(name, c.devices, c.packets, render.duration(c.min_seconds)) for name, c in sorted(p.classes.items())]
    render.plan_table(rows, ("total", p.devices, p.total_packets, render.duration(p.min_seconds)))
    render.info(f"expected with {p.expected_devices} of {render.plural(p.devices, 'address', 'addresses')} holding a "
                f"device and the others {'dropping' if p.silent_share else 'refusing'} probes: about "
                f"{render.plural(p.expected_packets, 'packet')} in "
                f"{render.duration(p.expected_seconds)}")
    if window is None:
        render.info(f"profile {prepared.profile.name} has no maintenance window: a scan may run at any time")
    else:
        def verdict(fit: bool | None) -> str:
            return "fits" if fit else "does not fit"

        render.info(f"next maintenance window {window[0].astimezone():%a %Y-%m-%d %H:%M} to "
                    f"{window[1].astimezone():%H:%M %Z} ({render.duration(window_s or 0)}): the worst case "
                    f"{verdict(fits['worst'])}, the expected scan {verdict(fits['expected'])}")
    render.info(f"protocols: {', '.join(probe.name for probe in prepared.probes)}; at most {p.packets_per_device} "
                f"packets per address; excluded devices (zero packets): {excluded}")


@app.command(cls=_ProbeHelp)
def scan(
    targets: Annotated[list[str] | None, typer.Argument(help="Hosts, CIDR blocks, ranges (a-b) or @file.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", "-p", help="Shipped profile name or a profile file "
                                                 "(default: default, or the resumed scan's).")] = None,
    protocol: ProtocolOption = None,
    port: PortOption = None,
    scope: ScopeOption = None,
    deadline: Annotated[str | None, typer.Option(help="Stop by then: 30m, 2h, 06:00 or an ISO time.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the devices the last unfinished scan missed.")]
    = False,
    ignore_window: Annotated[bool, typer.Option("--ignore-window", help="Run outside the profile's windows "
                                                "(needs --reason; recorded in the audit log).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why the window is overridden.")] = None,
    db: DbOption = None,
    site: Annotated[str | None, typer.Option(
        "--site", callback=_site, show_default=False,
        help="Site the scan belongs to, in the inventory file or a central one (default: the profile's site, "
        "$OTPROBE_SITE, the config file's site, else default).")] = None,
    audit: Annotated[Path | None, typer.Option(help="Audit log (default: audit.jsonl beside the inventory).")]
    = None,
    fmt: Annotated[ScanFormat, typer.Option("--format", help="table, json (one document, see docs/report.md) or "
                                            "jsonl (one line per device and protocol).")] = ScanFormat.table,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the scan's report to this file (HTML; "
                                                "Markdown for .md).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary on stderr.")] = False,
) -> None:
    """Identify devices with read-only queries, paced by the profile, and record them in the inventory.

    Exit codes: 0 complete; 2 usage or profile error; 3 refused (scope or window);
    4 incomplete (deadline or interrupt: resume with --resume).

    Example: otprobe scan 127.0.1.0/24 127.0.2.10-20 --profile lab --deadline 30m
    """
    import asyncio
    from datetime import UTC, datetime

    from otprobe.inventory.database import audit_beside, database_setting, is_central
    from otprobe.scan import parse_deadline, resume_targets

    if report is not None and not (report.parent.is_dir() and os.access(report.parent, os.W_OK)):
        # refused before any packet: a scan whose record cannot be written is not one to start
        raise typer.BadParameter(f"{report}: its folder does not exist or cannot be written", param_hint="--report")
    if ignore_window and not (reason and reason.strip()):
        raise typer.BadParameter("--ignore-window needs --reason \"why\" (it goes into the audit log)",
                                 param_hint="--reason")
    now = datetime.now(UTC)
    try:
        until = parse_deadline(deadline, now) if deadline else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--deadline") from None
    except OverflowError:  # 99999999999999999999h, or a year-1 time that UTC cannot hold
        raise typer.BadParameter(f"{deadline!r} is beyond the dates otprobe can represent",
                                 param_hint="--deadline") from None
    if until is not None and until <= now:
        # it would only open a scan that aborts every device at once
        raise typer.BadParameter(f"--deadline {deadline} is in the past ({until:%Y-%m-%d %H:%M} UTC)",
                                 param_hint="--deadline")
    setting = database_setting(db)
    with _closing(open_store(setting, site, create=True)) as store:
        resuming = resume_targets(store) if resume else None
        if resuming is not None:
            profile = profile or resuming.profile
            targets = list(resuming.jobs)
            pairs = sum(len(protocols) for protocols in resuming.jobs.values())
            render.info(f"resuming scan {resuming.scan_id}: {render.plural(len(targets), 'device')} not covered "
                        f"({render.plural(pairs, 'device-protocol pair')})", quiet)
        elif not targets:
            raise typer.BadParameter("give at least one target, or --resume", param_hint="TARGET")
        prepared = _prepare(profile or "default", list(targets or []), protocol, port, scope, now=now,
                            deadline=until, resume=resuming,
                            ignore_window_reason=reason.strip() if ignore_window and reason else None)
        leases = None
        if is_central(setting):
            from otprobe.inventory.central import CentralStore

            if isinstance(store, CentralStore):  # always, for a central URL
                store.site = _sensor_site(site, prepared.profile.site)
                leases = store.device_leases()  # across sensors, on top of the host-wide leases
                render.info(f"recording into {store.label} as site {store.site}", quiet)
        else:
            from otprobe.inventory.sqlite import SqliteStore

            if isinstance(store, SqliteStore):  # always, for a file: its scans name their site too
                store.write_site = _sensor_site(site, prepared.profile.site)
        audit_path = audit or audit_beside(setting)
        # jsonl streams: each result is a line as soon as it is recorded, for a pipeline that watches the scan
        stream = _jsonl_line if fmt is ScanFormat.jsonl else None
        outcome = asyncio.run(_run_scan(prepared, store, audit_path, now, quiet, leases, on_observation=stream))
        if report is not None:
            _write_report(store, outcome.scan_id, audit_path, report, _report_format(None, report), prepared.profile)
            render.info(f"report: {report}", quiet)
        if fmt is ScanFormat.json:
            _write_report(store, outcome.scan_id, audit_path, None, ReportFormat.json, prepared.profile)
    if fmt is ScanFormat.table:
        render.observations_table(outcome.observations)
    if not quiet:
        render.scan_summary(_summary(outcome, prepared))
    if outcome.status != "complete":
        raise typer.Exit(int(Exit.INCOMPLETE))


def _report_format(fmt: ReportFormat | None, output: Path | None) -> ReportFormat:
    """The format asked for, else the one the file name says (.md, .json), else HTML."""
    if fmt is not None:
        return fmt
    suffix = output.suffix.lower() if output is not None else ""
    return {".md": ReportFormat.markdown, ".markdown": ReportFormat.markdown, ".json": ReportFormat.json}.get(
        suffix, ReportFormat.html)


def _write_report(store: Store, scan_id: str, audit_path: Path, output: Path | None, fmt: ReportFormat,
                  profile: Any = None) -> None:
    """Scan `scan_id`'s report or JSON document to `output`, or to stdout without one."""
    import json

    from otprobe.report.documents import to_html, to_markdown
    from otprobe.report.facts import gather
    from otprobe.report.scan_json import document

    facts = gather(store, scan_id, audit_path, profile)
    if fmt is ReportFormat.json:
        text = json.dumps(document(facts), indent=2, default=str) + "\n"
    else:
        text = (to_html if fmt is ReportFormat.html else to_markdown)(facts)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        render.error_line(f"cannot write {output}: {exc.strerror or exc}")
        raise typer.Exit(int(Exit.ERROR)) from None


@app.command()
def report(
    scan_id: Annotated[str, typer.Argument(help="Scan id (or its prefix), as `otprobe scans list` shows it.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.",
                                                show_default=False)] = None,
    fmt: Annotated[ReportFormat | None, typer.Option("--format", help="html, markdown or json (default: from the "
                                                     "--output suffix, .md or .json, else html).",
                                                     show_default=False)] = None,
    db: DbOption = None,
    audit: Annotated[Path | None, typer.Option(help="Audit log of the scan (default: audit.jsonl beside the "
                                               "inventory).")] = None,
) -> None:
    """Write the record of one scan: what ran, what was found and not covered, and the safety evidence.

    HTML is one self-contained file (inline styles and SVG plots, nothing fetched) that opens
    offline; Markdown gives the same content for a ticket; json is the `scan --format json`
    document. What each part states: docs/report.md.

    Example: otprobe report 20261207T0455 -o scan.html
    """
    from otprobe.inventory.database import audit_beside, database_setting

    setting = database_setting(db)
    with _closing(open_store(setting)) as store:
        _write_report(store, scan_id, audit or audit_beside(setting), output, _report_format(fmt, output))
    if output is not None:
        render.info(f"report of scan {scan_id}: {output}")


def _summary(outcome: Any, prepared: Any) -> dict[str, Any]:
    from otprobe.model import Status

    result = outcome.result
    return {
        "scan_id": outcome.scan_id, "status": outcome.status, "packets": result.packets_sent,
        "elapsed_s": result.elapsed_s, "planned_packets": prepared.plan.total_packets,
        "identified": sum(o.status is Status.IDENTIFIED for o in result.observations),
        "tripped": len(result.tripped), "not_covered": len(result.not_covered),
        "excluded": len(prepared.resolution.excluded),
    }


def _jsonl_line(observation: Any) -> None:
    from otprobe.report.scan_json import jsonl_row

    typer.echo(jsonl_row(observation))
    sys.stdout.flush()


async def _run_scan(prepared: Any, store: Store, audit_path: Path, now: Any, quiet: bool, leases: Any = None,
                    on_observation: Any = None) -> Any:
    """Run one scan with Ctrl-C semantics: first stops gracefully, second at once; sockets close either way."""
    import asyncio
    import signal
    import time

    from otprobe.scan import ScanRun

    progress = render.ScanProgress(enabled=not quiet)
    run = ScanRun(prepared, store, audit_path, now=now, leases=leases, on_observation=on_observation)
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        render.info("stopping: finishing open sessions (Ctrl-C again to stop at once)" if interrupts == 1
                    else "stopping now: closing connections", quiet)
        run.stop(now=interrupts > 1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    started = time.monotonic()
    task = asyncio.create_task(run.run())
    try:
        with progress:
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                progress.update(run.progress(), time.monotonic() - started)
        return task.result()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


# --- profiles, windows, audit, simulators ---------------------------------------------------------------------

profiles_app = typer.Typer(help="Shipped and user scan profiles.\n\nExample: otprobe profiles check site.yaml",
                           no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
audit_app = typer.Typer(help="The hash-chained audit log.\n\nExample: otprobe audit verify audit.jsonl",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@profiles_app.command("list")
def profiles_list(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Your own profile files, or folders of them (*.yaml, *.yml), to list beside the shipped ones.",
        show_default=False)] = None,
) -> None:
    """List the shipped profiles, and your own ones given as files or folders, with the file each one is read
    from. A file that does not validate is listed as invalid, and the exit code is then 2.

    Example: otprobe profiles list /etc/otprobe/profiles
    """
    from otprobe.profile import list_profiles, load_profile

    rows = [(p.name, "shipped", str(p.path), p.description) for p in list_profiles()]
    invalid = False
    for path in _profile_files(paths or []):
        try:
            loaded = load_profile(path)
            rows.append((loaded.name, "user", str(path.resolve()), loaded.description))
        except ProfileError as exc:
            invalid = True
            first = str(exc).splitlines()[0]
            rows.append((path.stem, "user", str(path.resolve()), f"invalid: {first} (see: otprobe profiles check)"))
    render.generic_table("Profiles", ("name", "source", "file", "description"), rows)
    if invalid:
        raise typer.Exit(int(Exit.USAGE))


def _profile_files(paths: list[Path]) -> list[Path]:
    """The files named, and the *.yaml / *.yml files of the folders named, each once, in the order given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.exists():
            files.append(path)
        else:
            raise ProfileError(f"{path}: no such profile file or folder")
    return list(dict.fromkeys(files))


def _complete_shipped(incomplete: str) -> list[str]:
    """Shell completion of a shipped profile's name."""
    from otprobe.profile_copy import shipped_names

    return [name for name in shipped_names() if name.startswith(incomplete)]


@profiles_app.command("copy")
def profiles_copy(
    name: Annotated[str, typer.Argument(help="Shipped profile to copy.", autocompletion=_complete_shipped)],
    file: Annotated[Path, typer.Argument(help="New profile file to write; an existing file is never overwritten.")],
) -> None:
    """Write a copy of a shipped profile to FILE, to start a site profile.

    The copy keeps the shipped comments and names itself after FILE; its scope.include is emptied, so it refuses
    every target until you set the networks you may scan.

    Example: otprobe profiles copy maintenance-window site.yaml
    """
    from otprobe.profile_copy import site_copy

    text = site_copy(name, file.stem)
    try:
        with file.open("x", encoding="utf-8") as out:  # "x": refuse an existing file, even one created meanwhile
            out.write(text)
    except FileExistsError:
        raise ProfileError(f"{file}: already exists; not overwritten (choose another file name)") from None
    except OSError as exc:
        raise ProfileError(f"{file}: cannot write the copy ({exc.strerror or exc})") from None
    render.info(f"{file}: copy of the shipped profile {name!r}; set scope.include before scanning, then check it "
                f"with: otprobe profiles check {file}")


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name or file.")]) -> None:
    """Print a profile with every default filled in.

    Example: otprobe profiles show lab
    """
    import yaml

    from otprobe.profile import load_profile

    loaded = load_profile(name)
    typer.echo(yaml.safe_dump(loaded.model_dump(mode="json", by_alias=True), sort_keys=False), nl=False)


@profiles_app.command("check")
def profiles_check(path: Annotated[Path, typer.Argument(help="Profile file to validate.")]) -> None:
    """Validate a profile file: one line per problem, naming file, line and key.

    Example: otprobe profiles check profiles/site.yaml
    """
    from otprobe.profile import ProfileValidationError, load_profile

    try:
        loaded = load_profile(path)
    except ProfileValidationError as exc:
        for problem in exc.problems:
            render.error_line(problem)
        raise typer.Exit(int(Exit.USAGE)) from None
    render.info(f"{path}: ok (profile {loaded.name})")


@app.command()
def windows(
    profile: ProfileOption = "maintenance-window",
    count: Annotated[int, typer.Option(min=1, max=50, help="How many windows to list.")] = 5,
) -> None:
    """List the coming maintenance windows of a profile.

    Example: otprobe windows --profile inventory-refresh
    """
    from datetime import UTC, datetime

    from otprobe.profile import load_profile
    from otprobe.windows import current_window, next_windows

    loaded = load_profile(profile)
    if not loaded.windows:
        render.info(f"profile {loaded.name} has no windows: scans may run at any time")
        return
    now = datetime.now(UTC)
    current = current_window(loaded.windows, now)
    rows = [("open now" if (start, end) == current else "", f"{start.astimezone():%a %Y-%m-%d %H:%M %Z}",
             f"{end.astimezone():%a %Y-%m-%d %H:%M %Z}", f"{(end - start).total_seconds() / 3600:.1f} h")
            for start, end in next_windows(loaded.windows, now, count)]
    render.generic_table(f"Windows of {loaded.name}", ("", "opens", "closes", "length"), rows)


@audit_app.command("verify")
def audit_verify(
    path: Annotated[Path | None, typer.Argument(help="Audit log file (default: the one a scan writes: audit.jsonl "
                                                "beside the inventory file, or in ~/.local/share/otprobe for a "
                                                "central inventory).", show_default=False)] = None,
) -> None:
    """Check the audit log's hash chain: an edited, deleted or reordered line is reported with its number.

    Exits 0 when the chain holds and 1 when it does not.

    Example: otprobe audit verify ~/.local/share/otprobe/audit.jsonl
    """
    from otprobe.audit import verify
    from otprobe.inventory.database import audit_beside, database_setting

    # the log a scan writes with the same settings: a central inventory's URL names no folder of this machine
    path = path or audit_beside(database_setting(None))
    result = verify(path)
    if not result.ok:
        render.error_line(f"{path}:{result.bad_line}: {result.reason}")
        raise typer.Exit(int(Exit.CHANGES))
    render.info(f"{path}: ok, {render.plural(result.records, 'record')}, last hash {result.last_hash}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sim(ctx: typer.Context) -> None:
    """Run the bundled simulated plant (wraps `python -m simulators`).

    Arguments: up PLANT [--record FILE.jsonl] (foreground until Ctrl-C), or list PLANT.

    Examples: otprobe sim up simulators/plants/demo.yaml; otprobe sim list simulators/plants/demo.yaml
    """
    from simulators.__main__ import main as simulators_main

    raise typer.Exit(simulators_main(ctx.args or ["--help"]))


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option("--keep", help="Keep the inventory and audit log in this folder.")]
    = None,
) -> None:
    """Scan the bundled simulated plant on 127.0.0.0/8 with the `lab` profile and show the inventory.

    Starts the demo plant in-process, scans it into a temporary inventory, prints every
    device with its firmware and the pacing figures measured at the simulated devices,
    then stops the plant.

    Example: otprobe demo
    """
    import asyncio

    from otprobe.demo import run_demo
    from simulators.plant import PlantError

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)

    def announce(prepared: Any) -> None:
        render.info(f"demo plant up: {render.plural(len(prepared.resolution.targets), 'device')} to scan, "
                    f"{len(prepared.resolution.excluded)} excluded (safety cell); plan: at most "
                    f"{render.plural(prepared.plan.total_packets, 'packet')} in the worst case, which the caps spread "
                    "over at least "
                    f"{prepared.plan.min_seconds:.1f} s")

    try:
        result = asyncio.run(run_demo(keep, announce))
    except PlantError as exc:
        render.error_line(f"the demo plant cannot start: {exc} (is another simulated plant running?)")
        raise typer.Exit(int(Exit.ERROR)) from None
    render.assets_table(result.assets, title=f"Inventory after scan {result.outcome.scan_id}")
    render.generic_table(
        "Pacing, measured at each simulated device",
        ("device", "address", "class", "packets received", "max in any 1 s", "cap per 1 s", "max connections",
         "violations"),
        [(f.name, f.address, f.device_class, f.packets, f.max_per_s, f.cap_per_s, f.max_connections, f.violations)
         for f in result.figures],
    )
    render.scan_summary(_summary(result.outcome, result.prepared))
    render.info(f"audit log: {render.plural(result.audit_records, 'record')}, hash chain "
                f"{'verified' if result.audit_ok else 'BROKEN'}; files in {result.workdir}")
