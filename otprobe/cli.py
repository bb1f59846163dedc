"""The `otprobe` command line: parse, call the library, render, map domain errors to exit codes.

No protocol or pacing logic lives here. Exit codes (documented in the README and tested):
0 success; 1 changes found (`inventory diff`) or a failed `audit verify`; 2 usage or profile error;
3 refused (outside every maintenance window, or a target outside the scope); 4 incomplete (deadline or
interrupt); 5 any other error (inventory, I/O).
"""

from __future__ import annotations

import logging
from contextlib import closing as _closing
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated

import typer

from otprobe import render
from otprobe.errors import (
    AuditError,
    InventoryError,
    OtprobeError,
    ProfileError,
    ScanAborted,
    ScopeError,
    WindowError,
)
from otprobe.inventory import SqliteStore, default_db_path
from otprobe.inventory.diff import diff_scans, pick_scans
from otprobe.inventory.export import to_csv, to_cyclonedx, to_json


class Exit(IntEnum):
    OK = 0
    CHANGES = 1
    USAGE = 2
    REFUSED = 3
    INCOMPLETE = 4
    ERROR = 5


_EXIT_FOR: tuple[tuple[type[OtprobeError], Exit], ...] = (
    (ProfileError, Exit.USAGE),
    (ScopeError, Exit.REFUSED),
    (WindowError, Exit.REFUSED),
    (ScanAborted, Exit.INCOMPLETE),
    (AuditError, Exit.CHANGES),
    (InventoryError, Exit.ERROR),
)


class Format(StrEnum):
    table = "table"
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


app = typer.Typer(
    help="otprobe: paced, read-only identity and firmware inventory for OT networks.\n\n"
    "Example: otprobe scan 127.0.1.0/24 --profile lab",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
inventory_app = typer.Typer(help="Read the asset inventory.\n\nExample: otprobe inventory list --vendor Siemens",
                            no_args_is_help=True)
scans_app = typer.Typer(help="List past scans.\n\nExample: otprobe scans list", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
app.add_typer(scans_app, name="scans")

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Inventory file (default: $OTPROBE_DB or ~/.local/share/otprobe/inventory.db).",
                 show_default=False),
]


def open_store(db: Path | None) -> SqliteStore:
    return SqliteStore(db or default_db_path())


@app.callback()
def main(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More log lines on stderr (-vv: debug).")]
    = 0,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@inventory_app.command("list")
def inventory_list(
    db: DbOption = None,
    vendor: Annotated[str | None, typer.Option(help="Only assets whose vendor contains this text.")] = None,
    device_class: Annotated[str | None, typer.Option("--class", help="Only this device class.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Only assets that answered this protocol.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """List assets with firmware.

    Example: otprobe inventory list --class plc --protocol s7
    """
    try:
        with _closing(open_store(db)) as store:
            assets = [
                a for a in store.assets()
                if (vendor is None or vendor.lower() in (a.vendor or "").lower())
                and (device_class is None or a.device_class == device_class)
                and (protocol is None or protocol in a.protocols)
            ]
    except OtprobeError as exc:
        raise fail(exc) from None
    if fmt is Format.json:
        render.print_json([a.__dict__ for a in assets])
    else:
        render.assets_table(assets)


@inventory_app.command("show")
def inventory_show(
    asset: Annotated[str, typer.Argument(help="Asset id (or its prefix), address or serial.")],
    db: DbOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """Show one asset with its firmware and address history.

    Example: otprobe inventory show 127.0.1.10
    """
    try:
        with _closing(open_store(db)) as store:
            record = store.asset(asset)
            history = store.history(record.id)
    except OtprobeError as exc:
        raise fail(exc) from None
    if fmt is Format.json:
        render.print_json({**record.__dict__, "history": history})
    else:
        render.asset_detail(record, history)


@inventory_app.command("diff")
def inventory_diff(
    from_scan: Annotated[str | None, typer.Option("--from", help="Earlier scan id (default: the one before --to).")]
    = None,
    to_scan: Annotated[str | None, typer.Option("--to", help="Later scan id (default: the latest finished scan).")]
    = None,
    db: DbOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """What changed between two scans: new, missing, firmware changed, replaced, moved.

    Exits 0 when nothing changed and 1 when something did, so cron and CI can alert on it.

    Example: otprobe inventory diff --format json
    """
    try:
        with _closing(open_store(db)) as store:
            old, new = pick_scans(store, from_scan, to_scan)
            diff = diff_scans(store, old, new)
    except OtprobeError as exc:
        raise fail(exc) from None
    if fmt is Format.json:
        render.print_json(diff.as_dict())
    else:
        render.diff_table(diff.as_dict())
    raise typer.Exit(int(Exit.CHANGES if diff else Exit.OK))


@inventory_app.command("export")
def inventory_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="json, csv or cyclonedx (CycloneDX 1.6 JSON).")]
    = ExportFormat.json,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")]
    = None,
    db: DbOption = None,
) -> None:
    """Export the inventory.

    Example: otprobe inventory export --format cyclonedx -o plant.cdx.json
    """
    try:
        with _closing(open_store(db)) as store:
            assets = store.assets()
    except OtprobeError as exc:
        raise fail(exc) from None
    text = {ExportFormat.json: to_json, ExportFormat.csv: to_csv, ExportFormat.cyclonedx: to_cyclonedx}[fmt](assets)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text)


@scans_app.command("list")
def scans_list(
    db: DbOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """List scans with their status (complete, incomplete, interrupted, running).

    Example: otprobe scans list
    """
    try:
        with _closing(open_store(db)) as store:
            scans = store.scans()
    except OtprobeError as exc:
        raise fail(exc) from None
    if fmt is Format.json:
        render.print_json([s.__dict__ for s in scans])
    else:
        render.scans_table(scans)

