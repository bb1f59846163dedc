"""The inventory schema, described once in SQLAlchemy Core: the tables of a sensor's SQLite file and of a central
database alike, with what many sensors sharing one database need.

Sites: every scan belongs to one, and an asset is keyed by (site, address), because plants reuse the same private
address ranges. Scan ids are already unique strings (UTC second plus a random suffix), so a scan and its
observations keep their sensor's identity when pushed; `audit_heads` anchors each pushed scan's end of its
sensor's audit hash chain; `device_leases` keeps two sensors off one device at once.

JSON values are TEXT holding JSON, and times are ISO 8601 UTC TEXT (they sort as text), exactly as in the SQLite
files of schema versions 1-3, which move onto this schema by copying rows (`sqlite_schema.py`). Lease expiry is a
number (epoch seconds), the one time the database compares.

The migrations in `otprobe/inventory/migrations` build this schema; a test compares the two on SQLite and
PostgreSQL, so a change here without its migration fails.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

SCAN_STATUSES = ("running", "complete", "incomplete", "interrupted")

metadata = MetaData()

sites = Table(
    "sites", metadata,
    Column("name", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
)

scans = Table(
    "scans", metadata,
    Column("id", Text, primary_key=True),
    Column("site", Text, ForeignKey("sites.name"), nullable=False),
    Column("profile", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("ended_at", Text),
    Column("status", Text, nullable=False),
    Column("pid", Integer),
    Column("host", Text),
    Column("targets", Text, nullable=False),
    Column("not_covered", Text, nullable=False, server_default="[]"),
    Column("counts", Text, nullable=False, server_default="{}"),
    Column("protocols", Text, nullable=False, server_default="[]"),
    Column("resumes", Text, ForeignKey("scans.id")),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in SCAN_STATUSES)})", name="scans_status"),
)
Index("scans_site_started", scans.c.site, scans.c.started_at)

observations = Table(
    "observations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scan_id", Text, ForeignKey("scans.id"), nullable=False),
    Column("ip", Text, nullable=False),
    Column("protocol", Text, nullable=False),
    Column("port", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("device_class", Text, nullable=False),
    Column("identity", Text),
    Column("latency_s", Float),
    Column("packets", Integer, nullable=False),
    Column("error", Text),
    Column("observed_at", Text, nullable=False),
)
Index("observations_scan", observations.c.scan_id, observations.c.ip)

assets = Table(
    "assets", metadata,
    Column("id", Text, primary_key=True),
    Column("site", Text, ForeignKey("sites.name"), nullable=False),
    Column("ip", Text),
    Column("device_class", Text, nullable=False),
    Column("vendor", Text),
    Column("model", Text),
    Column("product_code", Text),
    Column("serial", Text),
    Column("firmware", Text),
    Column("hardware_version", Text),
    Column("protocols", Text, nullable=False),
    Column("identity", Text, nullable=False),
    Column("conflicts", Text, nullable=False),
    Column("first_seen", Text, nullable=False),
    Column("last_seen", Text, nullable=False),
    Column("retired", Boolean, nullable=False, server_default="0"),
    Column("asset_type", Text),  # one of model.ASSET_TYPES, from the device's own protocol data
    Column("cpu_state", Text),  # RUN/STOP, when the last scan read an S7 CPU's state
)
# (site, address) is the asset key; no unique index, because two devices swapping addresses in one scan pass
# through a moment where both rows hold one of them
Index("assets_site_ip", assets.c.site, assets.c.ip)
Index("assets_serial", assets.c.serial)
Index("assets_asset_type", assets.c.asset_type)

asset_firmware = Table(
    "asset_firmware", metadata,
    Column("asset_id", Text, ForeignKey("assets.id"), nullable=False),
    Column("scan_id", Text, nullable=False),
    Column("firmware", Text),
    Column("observed_at", Text, nullable=False),
)
Index("asset_firmware_asset", asset_firmware.c.asset_id)

asset_addresses = Table(
    "asset_addresses", metadata,
    Column("asset_id", Text, ForeignKey("assets.id"), nullable=False),
    Column("ip", Text, nullable=False),
    Column("scan_id", Text, nullable=False),
    Column("observed_at", Text, nullable=False),
)
Index("asset_addresses_asset", asset_addresses.c.asset_id)

asset_events = Table(
    "asset_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the order events happened in
    Column("asset_id", Text, nullable=False),
    Column("scan_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("old", Text),
    Column("new", Text),
    Column("at", Text, nullable=False),
)
Index("asset_events_asset", asset_events.c.asset_id)

scan_assets = Table(
    "scan_assets", metadata,
    Column("scan_id", Text, ForeignKey("scans.id"), nullable=False),
    Column("asset_id", Text, nullable=False),
    Column("ip", Text, nullable=False),
    Column("firmware", Text),
    Column("model", Text),
    Column("serial", Text),
    Column("protocols", Text, nullable=False, server_default="[]"),  # those that identified it, a JSON list
    PrimaryKeyConstraint("scan_id", "asset_id"),
)
# the diff's keyed lookups: by address and by serial within a scan, by asset across scans
Index("scan_assets_ip", scan_assets.c.scan_id, scan_assets.c.ip)
Index("scan_assets_serial", scan_assets.c.scan_id, scan_assets.c.serial)
Index("scan_assets_asset", scan_assets.c.asset_id)

audit_heads = Table(
    "audit_heads", metadata,
    Column("scan_id", Text, ForeignKey("scans.id"), primary_key=True),
    Column("seq", Integer, nullable=False),  # the audit line that closed the scan on its sensor
    Column("hash", Text, nullable=False),  # that line's SHA-256: the chain up to it cannot be rewritten unseen
    Column("pushed_at", Text, nullable=False),
)

device_leases = Table(
    "device_leases", metadata,
    Column("site", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("holder", Text),  # None: free; the last holder's pacing below still counts
    Column("expires_at", Float, nullable=False),  # epoch seconds; a holder that stops renewing loses it then
    Column("last_sent", Float),  # epoch seconds of the last packet and connection the previous holder sent
    Column("last_connection", Float),
    PrimaryKeyConstraint("site", "address"),
)
