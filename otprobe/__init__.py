"""otprobe: paced, read-only identity and firmware inventory for OT networks."""

__version__ = "0.1.0"
