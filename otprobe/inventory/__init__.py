"""The asset inventory: a store of scans, observations and merged assets, with diffs and exports."""

from otprobe.inventory.sqlite import SqliteStore, default_db_path
from otprobe.inventory.store import AssetRecord, ScanRecord, Store

__all__ = ["AssetRecord", "ScanRecord", "SqliteStore", "Store", "default_db_path"]
