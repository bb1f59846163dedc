"""Makes the inventory files of earlier releases kept beside this script, for the in-place upgrade tests. Run it at
the commit its README names (the files record what that release wrote; run later, it writes the newer schema):

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python tests/inventory/data/make_old_inventories.py'

`inventory-schema3.sqlite`: two real `otprobe scan`s of six devices of the demo plant (moved to 127.0.1xx.x), the
second after a firmware upgrade, an address move and a device stopped, so the file holds scans, observations,
assets, snapshots and every kind of history row. `inventory-schema2.sqlite` and `inventory-schema1.sqlite`: the
files the upgrade and coverage tests used to build in code (a finished scan of one device whose assets and snapshot
predate schema 3; an incomplete scan from before scans recorded their protocols).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1]), str(HERE.parent)]

from cli_helpers import moved_demo, plain_env, run_otprobe  # noqa: E402
from test_schema_upgrade import version_2_inventory  # noqa: E402

from otprobe.inventory.sqlite import MIGRATIONS  # noqa: E402
from simulators.plant import running_plant  # noqa: E402

SHIFT = 110
KEPT = ("line1-cpu315", "pack-mvi56", "hmi-panelview", "utility-m580", "feeder-pm710", "hvac-pxc")


async def schema3(path: Path, work: Path) -> None:
    before, profile = moved_demo(SHIFT)
    before["devices"] = [d for d in before["devices"] if d["name"] in KEPT]
    after = yaml.safe_load(yaml.safe_dump(before))
    named = {d["name"]: d for d in after["devices"]}
    named["line1-cpu315"]["s7"]["firmware"] = "V3.2.9"
    moved_to = named["pack-mvi56"]["address"].rsplit(".", 1)[0] + ".99"
    named["pack-mvi56"]["address"] = moved_to
    after["devices"].remove(named["hmi-panelview"])
    targets = [d["address"] for d in before["devices"]] + [moved_to]
    (work / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    for plant in (before, after):
        async with running_plant(plant):
            done = await run_otprobe("scan", *targets, "--profile", str(work / "profile.yaml"), "--db", str(path),
                                     "--audit", str(work / "audit.jsonl"), "--quiet", env=plain_env(work))
        assert done.code == 0, done.stderr


def schema1(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(f"{MIGRATIONS[1]}; PRAGMA user_version=1;")
        db.execute("INSERT INTO scans (id, profile, started_at, status, targets, not_covered) VALUES "
                   "('old', 'lab', '2026-01-01T00:00:00+00:00', 'incomplete', ?, ?)",
                   (json.dumps(["127.0.99.10", "127.0.99.11"]), json.dumps(["127.0.99.11"])))
        db.execute("INSERT INTO observations (scan_id, ip, protocol, port, status, device_class, packets, observed_at)"
                   " VALUES ('old', '127.0.99.10', 's7', 102, 'identified', 'plc', 4, '2026-01-01T00:00:01+00:00')")
    db.close()


FILES = ("inventory-schema3.sqlite", "inventory-schema2.sqlite", "inventory-schema1.sqlite")


def main() -> None:
    for name in FILES:
        (HERE / name).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as work:
        asyncio.run(schema3(HERE / "inventory-schema3.sqlite", Path(work)))
    version_2_inventory(HERE / "inventory-schema2.sqlite")
    schema1(HERE / "inventory-schema1.sqlite")
    for name in FILES:
        db = sqlite3.connect(HERE / name)
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal beside it
        db.execute("PRAGMA page_size=1024")  # small pages: the file is kept in the repository
        db.execute("VACUUM")
        db.close()


if __name__ == "__main__":
    main()
