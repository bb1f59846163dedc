"""The first shared schema: the SQLite file's version-2 tables, with sites, audit heads and device leases.

Written out rather than taken from schema.py, so that it stays what it was when schema.py moves on.

Revision ID: 0001_sites
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_sites"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    text, integer = sa.Text(), sa.Integer()
    op.create_table(
        "sites",
        sa.Column("name", text, primary_key=True),
        sa.Column("created_at", text, nullable=False),
    )
    op.create_table(
        "scans",
        sa.Column("id", text, primary_key=True),
        sa.Column("site", text, sa.ForeignKey("sites.name"), nullable=False),
        sa.Column("profile", text, nullable=False),
        sa.Column("started_at", text, nullable=False),
        sa.Column("ended_at", text),
        sa.Column("status", text, nullable=False),
        sa.Column("pid", integer),
        sa.Column("host", text),
        sa.Column("targets", text, nullable=False),
        sa.Column("not_covered", text, nullable=False, server_default="[]"),
        sa.Column("counts", text, nullable=False, server_default="{}"),
        sa.Column("protocols", text, nullable=False, server_default="[]"),
        sa.Column("resumes", text, sa.ForeignKey("scans.id")),
        sa.CheckConstraint("status IN ('running', 'complete', 'incomplete', 'interrupted')", name="scans_status"),
    )
    op.create_index("scans_site_started", "scans", ["site", "started_at"])
    op.create_table(
        "observations",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("scan_id", text, sa.ForeignKey("scans.id"), nullable=False),
        sa.Column("ip", text, nullable=False),
        sa.Column("protocol", text, nullable=False),
        sa.Column("port", integer, nullable=False),
        sa.Column("status", text, nullable=False),
        sa.Column("device_class", text, nullable=False),
        sa.Column("identity", text),
        sa.Column("latency_s", sa.Float()),
        sa.Column("packets", integer, nullable=False),
        sa.Column("error", text),
        sa.Column("observed_at", text, nullable=False),
    )
    op.create_index("observations_scan", "observations", ["scan_id", "ip"])
    op.create_table(
        "assets",
        sa.Column("id", text, primary_key=True),
        sa.Column("site", text, sa.ForeignKey("sites.name"), nullable=False),
        sa.Column("ip", text),
        sa.Column("device_class", text, nullable=False),
        sa.Column("vendor", text),
        sa.Column("model", text),
        sa.Column("product_code", text),
        sa.Column("serial", text),
        sa.Column("firmware", text),
        sa.Column("hardware_version", text),
        sa.Column("protocols", text, nullable=False),
        sa.Column("identity", text, nullable=False),
        sa.Column("conflicts", text, nullable=False),
        sa.Column("first_seen", text, nullable=False),
        sa.Column("last_seen", text, nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.create_index("assets_site_ip", "assets", ["site", "ip"])
    op.create_index("assets_serial", "assets", ["serial"])
    for name, columns in (
        ("asset_firmware", [sa.Column("scan_id", text, nullable=False), sa.Column("firmware", text)]),
        ("asset_addresses", [sa.Column("ip", text, nullable=False), sa.Column("scan_id", text, nullable=False)]),
    ):
        op.create_table(
            name,
            sa.Column("asset_id", text, sa.ForeignKey("assets.id"), nullable=False),
            *columns,
            sa.Column("observed_at", text, nullable=False),
        )
        op.create_index(f"{name}_asset", name, ["asset_id"])
    op.create_table(
        "asset_events",
        sa.Column("id", integer, primary_key=True, autoincrement=True),
        sa.Column("asset_id", text, nullable=False),
        sa.Column("scan_id", text, nullable=False),
        sa.Column("kind", text, nullable=False),
        sa.Column("old", text),
        sa.Column("new", text),
        sa.Column("at", text, nullable=False),
    )
    op.create_index("asset_events_asset", "asset_events", ["asset_id"])
    op.create_table(
        "scan_assets",
        sa.Column("scan_id", text, sa.ForeignKey("scans.id"), nullable=False),
        sa.Column("asset_id", text, nullable=False),
        sa.Column("ip", text, nullable=False),
        sa.Column("firmware", text),
        sa.Column("model", text),
        sa.Column("serial", text),
        sa.PrimaryKeyConstraint("scan_id", "asset_id"),
    )
    op.create_table(
        "audit_heads",
        sa.Column("scan_id", text, sa.ForeignKey("scans.id"), primary_key=True),
        sa.Column("seq", integer, nullable=False),
        sa.Column("hash", text, nullable=False),
        sa.Column("pushed_at", text, nullable=False),
    )
    op.create_table(
        "device_leases",
        sa.Column("site", text, nullable=False),
        sa.Column("address", text, nullable=False),
        sa.Column("holder", text),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("last_sent", sa.Float()),
        sa.Column("last_connection", sa.Float()),
        sa.PrimaryKeyConstraint("site", "address"),
    )


def downgrade() -> None:
    for name in ("device_leases", "audit_heads", "scan_assets", "asset_events", "asset_addresses", "asset_firmware",
                 "assets", "observations", "scans", "sites"):
        op.drop_table(name)
