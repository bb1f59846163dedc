"""The domain exception tree. The CLI maps each branch to one line and an exit code."""

from __future__ import annotations


class OtprobeError(Exception):
    """Base of every error otprobe raises on purpose."""


class ProfileError(OtprobeError):
    """A profile file is malformed; the message names file, line and key."""


class ScopeError(OtprobeError):
    """A target is outside the profile's scope or cannot be parsed."""


class TargetError(ScopeError):
    """A target, a target file or a --scope entry cannot be parsed or read: a usage error, not a refusal."""


class PolicyViolation(OtprobeError):
    """An operation is not on the central read-only allowlist: it must never reach the wire."""


class ProbeContractError(OtprobeError):
    """A probe tried an operation it did not declare."""


class BudgetExceeded(ProbeContractError):
    """A probe tried to send more packets to one device than it declared."""


class ProtocolError(OtprobeError):
    """A device reply could not be parsed. Parsers raise only this on hostile input."""


class AuditError(OtprobeError):
    """The audit log cannot be written, or its hash chain does not verify."""


class InventoryError(OtprobeError):
    """The inventory store cannot be opened or does not hold what was asked for."""


class WindowError(OtprobeError):
    """A scan was asked to run outside every maintenance window of its profile."""


class ScanLocked(OtprobeError):
    """Another scan is already writing to the same audit log and inventory: two at once would double the load."""


class ScanAborted(OtprobeError):
    """The scan stopped early (deadline or interrupt) before covering every device."""
