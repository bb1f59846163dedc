"""otprobe: paced, read-only identity and firmware inventory for OT networks.

The library is the API; the `otprobe` command is a thin layer over it:

    profile = load_profile("lab")
    prepared = prepare(profile, "lab", ["127.0.1.0/24"], now=datetime.now(UTC))   # no packet sent yet
    outcome = await ScanRun(prepared, SqliteStore("inv.db"), Path("audit.jsonl"), now=...).run()
"""

__version__ = "0.1.0"

from otprobe.inventory import SqliteStore  # after __version__, which export.py reads
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import PROBES
from otprobe.profile import load_profile
from otprobe.scan import ScanRun, prepare

__all__ = [
    "PROBES", "Identity", "Observation", "ScanRun", "SqliteStore", "Status", "Target", "__version__", "load_profile",
    "prepare",
]
