"""What a device is and its CPU's RUN/STOP per asset, and per snapshot row the protocols that identified it: the
SQLite file's schema version 3, with the indexes that serve a diff's keyed lookups.

Rows from before this are filled in as the SQLite migration fills them: an asset's type and CPU state from its
stored identity, a snapshot row's protocols from the observations its scan identified at its address. Written out
rather than taken from the stores' code, so that it stays what it was when they move on.

Revision ID: 0002_asset_kinds
Revises: 0001_sites
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0002_asset_kinds"
down_revision = "0001_sites"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("assets", sa.Column("asset_type", sa.Text()))
    op.add_column("assets", sa.Column("cpu_state", sa.Text()))
    op.add_column("scan_assets", sa.Column("protocols", sa.Text(), nullable=False, server_default="[]"))
    connection = op.get_bind()
    _fill_assets(connection)
    _fill_snapshots(connection)
    op.create_index("assets_asset_type", "assets", ["asset_type"])
    op.create_index("scan_assets_ip", "scan_assets", ["scan_id", "ip"])
    op.create_index("scan_assets_serial", "scan_assets", ["scan_id", "serial"])
    op.create_index("scan_assets_asset", "scan_assets", ["asset_id"])


def _fill_assets(connection: sa.Connection) -> None:
    """asset_type from the stored identity, cpu_state from the first protocol's raw data that carries one."""
    assets = sa.table("assets", sa.column("id"), sa.column("identity"), sa.column("asset_type"),
                      sa.column("cpu_state"))
    rows = []
    for asset_id, identity in connection.execute(sa.select(assets.c.id, assets.c.identity)).all():
        data = json.loads(identity or "{}")
        raw = data.get("raw") or {}
        cpu_state = next((r["cpu_state"] for r in raw.values() if isinstance(r, dict) and r.get("cpu_state")), None)
        if data.get("asset_type") is not None or cpu_state is not None:
            rows.append({"key": asset_id, "asset_type": data.get("asset_type"), "cpu_state": cpu_state})
    for start in range(0, len(rows), _BATCH):
        connection.execute(sa.update(assets).where(assets.c.id == sa.bindparam("key")), rows[start:start + _BATCH])


def _fill_snapshots(connection: sa.Connection) -> None:
    """Each snapshot row's protocols: those its scan identified at its address, sorted."""
    observations = sa.table("observations", sa.column("scan_id"), sa.column("ip"), sa.column("protocol"),
                            sa.column("status"))
    scan_assets = sa.table("scan_assets", sa.column("scan_id"), sa.column("asset_id"), sa.column("ip"),
                           sa.column("protocols"))
    identified: dict[tuple[str, str], set[str]] = defaultdict(set)
    for scan_id, ip, protocol in connection.execute(
            sa.select(observations.c.scan_id, observations.c.ip, observations.c.protocol).distinct()
            .where(observations.c.status == "identified")):
        identified[(scan_id, ip)].add(protocol)
    rows = [{"scan": scan_id, "asset": asset_id, "protocols": json.dumps(sorted(identified[(scan_id, ip)]))}
            for scan_id, asset_id, ip in connection.execute(
                sa.select(scan_assets.c.scan_id, scan_assets.c.asset_id, scan_assets.c.ip)).all()
            if identified.get((scan_id, ip))]
    query = sa.update(scan_assets).where(scan_assets.c.scan_id == sa.bindparam("scan"),
                                         scan_assets.c.asset_id == sa.bindparam("asset"))
    for start in range(0, len(rows), _BATCH):
        connection.execute(query, rows[start:start + _BATCH])


def downgrade() -> None:
    for name in ("scan_assets_asset", "scan_assets_serial", "scan_assets_ip"):
        op.drop_index(name, table_name="scan_assets")
    op.drop_index("assets_asset_type", table_name="assets")
    with op.batch_alter_table("scan_assets") as batch:
        batch.drop_column("protocols")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("cpu_state")
        batch.drop_column("asset_type")
