"""The SQL that pairs two scans' snapshots (`scan_assets`) for a diff, and its rows as `SnapshotPair`s: one query for
every store, so a diff means the same on a sensor's file and on a central database.

Two things differ by store and are filled in by it: which scans came before the later one (`earlier`: the SQLite
file knows the order it recorded scans in, a central database the scans' start) and how addresses sort (`bytewise`:
PostgreSQL sorts text by its locale unless told, SQLite byte by byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from otprobe.inventory.store import SnapshotPair, SnapshotRow

# a SnapshotRow's fields, from the table aliased {p}, named {p}_...
_SNAPSHOT = ("{p}.asset_id AS {p}_id, {p}.ip AS {p}_ip, {p}.firmware AS {p}_firmware, {p}.model AS {p}_model,"
             " {p}.serial AS {p}_serial, {p}.protocols AS {p}_protocols")
# Each asset of the later snapshot that may have changed (not in the earlier one, another address or firmware, or a
# serial that became shared there) with its earlier row (by asset id), the earlier scan's asset at its address that
# the later scan no longer saw (a replaced device), and whether any earlier scan saw it. Every lookup goes through an
# index and unchanged assets never leave the database: the diff is linear in the assets.
_AFTER_PAIRS = f"""
WITH shared AS (
    SELECT serial FROM scan_assets WHERE scan_id = :new AND serial <> '' GROUP BY serial HAVING count(*) > 1
    EXCEPT SELECT serial FROM scan_assets WHERE scan_id = :old AND serial <> '' GROUP BY serial HAVING count(*) > 1
), changed AS MATERIALIZED (
    SELECT {_SNAPSHOT.format(p="a")}, {_SNAPSHOT.format(p="b")}
    FROM scan_assets a LEFT JOIN scan_assets b ON b.scan_id = :old AND b.asset_id = a.asset_id
    WHERE a.scan_id = :new
        AND (b.asset_id IS NULL OR b.ip <> a.ip OR b.firmware IS DISTINCT FROM a.firmware
             OR a.serial IN (SELECT serial FROM shared))
)
SELECT changed.*, {_SNAPSHOT.format(p="d")},
    EXISTS (SELECT 1 FROM scan_assets e JOIN scans s ON s.id = e.scan_id
            WHERE e.asset_id = changed.a_id AND {{earlier}}),
    changed.a_serial IN (SELECT serial FROM shared)
FROM changed
LEFT JOIN scan_assets d ON changed.b_id IS NULL AND d.scan_id = :old AND d.ip = changed.a_ip
    AND NOT EXISTS (SELECT 1 FROM scan_assets x WHERE x.scan_id = :new AND x.asset_id = d.asset_id)
ORDER BY changed.a_ip{{bytewise}}
"""
# The earlier snapshot's assets the later one lacks, and whether the later scan saw another asset at the address.
_BEFORE_ONLY = f"""
SELECT {_SNAPSHOT.format(p="b")},
    EXISTS (SELECT 1 FROM scan_assets x WHERE x.scan_id = :new AND x.ip = b.ip)
FROM scan_assets b
WHERE b.scan_id = :old AND NOT EXISTS (SELECT 1 FROM scan_assets a WHERE a.scan_id = :new AND a.asset_id = b.asset_id)
ORDER BY b.ip{{bytewise}}
"""


def after_pairs_sql(earlier: str, bytewise: str = "") -> str:
    """The later snapshot's possibly changed assets; `earlier` is a condition on scans `s` before the later one
    (parameters `:old`, `:new` and whatever `earlier` names), `bytewise` a COLLATE clause or nothing."""
    return _AFTER_PAIRS.format(earlier=earlier, bytewise=bytewise)


def before_only_sql(bytewise: str = "") -> str:
    """The earlier snapshot's assets the later one lacks (parameters `:old`, `:new`)."""
    return _BEFORE_ONLY.format(bytewise=bytewise)


def pairs(after: Iterable[tuple[Any, ...]],
          before: Callable[[], Iterable[tuple[Any, ...]]] | None) -> Iterator[SnapshotPair]:
    """The pairs in the rows of `after_pairs_sql`, then of `before_only_sql` (run by `before` once the first rows are
    read, so one cursor may serve both; None: no earlier scan), as they are read."""
    for r in after:
        yield SnapshotPair(_row(r, 6), _row(r, 0), _row(r, 12), seen_earlier=bool(r[18]),
                           newly_shared_serial=bool(r[19]))
    for r in before() if before is not None else ():
        yield SnapshotPair(_row(r, 0), None, address_taken=bool(r[6]))


def _row(r: tuple[Any, ...], at: int) -> SnapshotRow | None:
    """The SnapshotRow in the six columns of `r` from `at` (`_SNAPSHOT`); None when the join found none."""
    if r[at] is None:
        return None
    return SnapshotRow(*r[at: at + 5], protocols_json=r[at + 5])
