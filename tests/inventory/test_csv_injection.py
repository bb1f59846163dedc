"""CSV export against formula injection: device strings that a spreadsheet would run as formulas are exported
as text (a leading `'`), plain numbers stay numbers, and separators, quotes and line breaks stay inside their
cell. JSON keeps every string exactly as the device sent it."""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otprobe.cli import app
from otprobe.inventory import SqliteStore
from otprobe.inventory.export import CSV_COLUMNS, write_csv
from otprobe.inventory.store import AssetRecord
from otprobe.model import Identity, Observation, Status

# What a hostile or badly configured device may call itself, field by field, and what the spreadsheet must show.
HOSTILE = {
    "vendor": ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    "model": ('+HYPERLINK("http://127.0.0.1/x","click")', '\'+HYPERLINK("http://127.0.0.1/x","click")'),
    "product_code": ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
    "firmware": ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    "serial": ("\t=1+1", "'\t=1+1"),
    "hardware_version": ("\r=1+1", "'\r=1+1"),
}
# a plain number is not a formula: it stays what it is ("-1" as a hardware revision, "+5" as a code)
NUMBERS = {"hardware_version": "-1", "product_code": "+5", "firmware": "-0.5", "serial": "-2e3"}
# separators, quotes and line breaks inside a value: CSV quoting keeps them in their cell, no new cell or row
EMBEDDED = {"vendor": 'ACME, Inc.;"=1+1"', "model": "line 1\nline 2\r\n=2+2", "product_code": "a,b", "serial": '"'}


def asset(asset_id: str, **values: str) -> AssetRecord:
    base = {"vendor": None, "model": None, "product_code": None, "serial": None, "firmware": None,
            "hardware_version": None}
    return AssetRecord(asset_id, "127.0.1.10", "plc", **{**base, **values}, protocols={"enip": 44818},
                       identity={}, conflicts={}, first_seen="2025-01-01T00:00:00+00:00",
                       last_seen="2025-01-01T00:00:00+00:00")


def to_csv(assets: list[AssetRecord]) -> str:
    out = io.StringIO()
    write_csv(assets, out)
    return out.getvalue()


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_formula_cells_are_exported_as_text() -> None:
    hostile = asset("a1", **{k: v for k, (v, _) in HOSTILE.items()})
    (row,) = rows(to_csv([hostile]))
    assert {k: row[k] for k in HOSTILE} == {k: shown for k, (_, shown) in HOSTILE.items()}
    # no cell of the file starts a formula, whichever column it is in
    starts = ("=", "+", "-", "@", "\t", "\r")
    assert [v for v in row.values() if v.startswith(starts)] == []


def test_plain_numbers_stay_numbers_and_embedded_separators_stay_in_their_cell() -> None:
    numbers, embedded = asset("n1", **NUMBERS), asset("e1", **EMBEDDED)
    text = to_csv([numbers, embedded])
    first, second = rows(text)
    assert {k: first[k] for k in NUMBERS} == NUMBERS
    assert {k: second[k] for k in EMBEDDED} == EMBEDDED
    # no cell split off
    assert len(first) == len(second) == len(CSV_COLUMNS) and None not in first and None not in second
    # every cell quoted and its quotes doubled, so a separator or quote inside never ends the cell
    assert text.startswith('"id","site","ip",')
    assert '"ACME, Inc.;""=1+1"""' in text


@pytest.mark.parametrize("value", ["-1", "+1", "-1.5", ".5", "-1e5", "1", "0.0"])
def test_a_number_is_left_alone(value: str) -> None:
    (row,) = rows(to_csv([asset("x", firmware=value)]))
    assert row["firmware"] == value


@pytest.mark.parametrize("value", ["-1+1", "-1.2.3", "-", "+", "-e5", "=1", "@1", "-1 ", "--1"])
def test_anything_more_than_a_number_is_text(value: str) -> None:
    (row,) = rows(to_csv([asset("x", firmware=value)]))
    assert row["firmware"] == "'" + value


def test_cli_export_csv_is_neutralised_and_json_keeps_the_device_strings(tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    with closing(SqliteStore(db)) as store:
        store.begin_scan("s1", "lab", ["127.0.1.10"], protocols=["enip"])
        identity = Identity(**{k: v for k, (v, _) in HOSTILE.items()})
        store.add_observation("s1", Observation("127.0.1.10", "enip", 44818, Status.IDENTIFIED, identity))
        store.finish_scan("s1", "complete")
    out = CliRunner().invoke(app, ["inventory", "export", "--format", "csv", "--db", str(db)])
    assert out.exit_code == 0, out.output
    (row,) = rows(out.stdout)
    assert {k: row[k] for k in HOSTILE} == {k: shown for k, (_, shown) in HOSTILE.items()}
    exported = json.loads(CliRunner().invoke(app, ["inventory", "export", "--format", "json", "--db", str(db)]).stdout)
    assert {k: exported[0][k] for k in HOSTILE} == {k: v for k, (v, _) in HOSTILE.items()}
