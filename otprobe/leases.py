"""Host-wide device leases: two otprobe processes on one host never have the same device in flight.

Each scan's pacing is its own, so two scans of one device (two inventories, two audit logs, two users) would each
open a connection and each send at the full cap. Before a scan's first packet to a device it takes that device's
lease: an exclusive `flock` on one file per address in a lease directory every user can reach. The kernel drops a
flock when its process dies, however it dies, so a dead scan's leases pass on by themselves and nothing is ever
"stale". A scan that finds a device leased waits for it (and says which process holds it) rather than refusing:
scheduled refreshes that overlap an engineer's scan then both finish, one after the other at each device.

Leaving a device, a scan writes into the lease file when its last packet and its last connection went out
(CLOCK_MONOTONIC, which all processes of one boot share, with the boot id); the next holder continues that spacing,
so the cap and the connection gap also hold across the hand-over. A file that cannot be read as such, or one from
another boot, is taken as "a packet just left": the safe reading.

Other backends (the central store's leases across sensors, `otprobe.inventory.central_leases`) offer the same two
things a scan uses, `acquire` and `waited` (`DeviceLeases`), and hand out leases with a `handover` and a `release`
(`HeldLease`).

Directory: `$OTPROBE_LEASE_DIR`, else `/run/lock/otprobe-leases` (not private per service, unlike /tmp under
systemd's PrivateTmp), else `otprobe-leases` in the temporary directory. Created sticky and world-writable like
/tmp, so that every user's scans share it. Only the class and global caps stay per scan.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from otprobe.errors import OtprobeError

log = logging.getLogger(__name__)

LEASE_DIR_ENV = "OTPROBE_LEASE_DIR"
POLL_S = 0.2  # how often a waiting scan tries a held lease again
_MAX_STATE = 4096  # a lease file is a few dozen bytes; more is not ours


class LeaseError(OtprobeError):
    """The lease directory or a lease file cannot be used safely."""


def default_directory() -> Path:
    configured = os.environ.get(LEASE_DIR_ENV)
    if configured:
        return Path(configured)
    run_lock = Path("/run/lock")
    base = run_lock if os.access(run_lock, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
    return base / "otprobe-leases"


@cache  # one boot per process: read once, not three times per device
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Handover:
    """Where the previous holder's pacing of the device ended, on CLOCK_MONOTONIC."""

    last_sent: float
    last_connection: float


class HeldLease(Protocol):
    """A device lease as the scheduler holds it."""

    handover: Handover | None

    def release(self, last_sent: float, last_connection: float) -> None: ...


class DeviceLeases(Protocol):
    """What a scan needs of a lease backend: wait for a device's lease, and say which devices it waited for."""

    waited: list[tuple[str, str]]

    async def acquire(self, address: str, stopping: Callable[[], bool]) -> HeldLease | None: ...


class Lease:
    """One held device lease. `handover` is what the previous holder left; `release()` passes the device on."""

    def __init__(self, fd: int, address: str, handover: Handover | None) -> None:
        self._fd: int | None = fd
        self.address = address
        self.handover = handover

    def release(self, last_sent: float, last_connection: float) -> None:
        """Record where this scan's pacing ended, then unlock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        state = {"pid": None, "boot": _boot_id(), "last_sent": last_sent, "last_connection": last_connection}
        try:
            _write(fd, state)
        except OSError as exc:  # a read-only lease file (another user's, not widened): the next holder waits a gap
            log.debug("cannot record the hand-over of %s: %s", self.address, exc)
        finally:
            os.close(fd)  # closing the descriptor drops the flock


class Leases:
    """The lease directory; `acquire` waits for a device's lease. One per scan."""

    def __init__(self, directory: Path | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory or default_directory()
        self._clock = clock
        self._ready = False
        self.waited: list[tuple[str, str]] = []  # (address, holder) for every device this scan had to wait for

    def _prepare(self) -> None:
        if self._ready:
            return
        try:
            os.mkdir(self.directory, 0o700)
            os.chmod(self.directory, 0o1777)  # mkdir's mode passes through the umask; sticky like /tmp
        except FileExistsError:
            pass
        except OSError as exc:
            raise LeaseError(f"cannot create the lease directory {self.directory}: {exc.strerror}") from None
        info = os.lstat(self.directory)
        if not stat.S_ISDIR(info.st_mode):
            raise LeaseError(f"lease directory {self.directory} is not a directory (a symlink?); set {LEASE_DIR_ENV}")
        self._ready = True

    def try_acquire(self, address: str) -> Lease | str:
        """The lease, or a description of the process holding it."""
        self._prepare()
        fd = _open(self.directory / address.replace(":", "_"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise LeaseError(f"cannot lock the lease of {address}: {exc.strerror}") from None
            holder = _read(fd).get("pid")
            os.close(fd)
            return f"pid {holder}" if isinstance(holder, int) else "another process"
        handover = self._handover(_read(fd))
        with suppress(OSError):  # a read-only lease file: holding the lock is what matters
            _write(fd, {"pid": os.getpid(), "boot": _boot_id()})
        return Lease(fd, address, handover)

    async def acquire(self, address: str, stopping: Callable[[], bool]) -> Lease | None:
        """Wait for the device's lease; None if the scan stops first."""
        while not stopping():
            got = self.try_acquire(address)
            if isinstance(got, Lease):
                return got
            if not any(a == address for a, _ in self.waited):
                self.waited.append((address, got))
                log.warning("%s is being scanned by another otprobe process (%s): waiting for it", address, got)
            await asyncio.sleep(POLL_S)
        return None

    def _handover(self, state: dict[str, object]) -> Handover | None:
        if not state:
            return None  # a fresh lease file: no scan has handed this device over
        now = self._clock()
        sent, connection = state.get("last_sent"), state.get("last_connection")
        if state.get("boot") != _boot_id() or not isinstance(sent, float) or not isinstance(connection, float):
            return Handover(now, now)  # unreadable or from another boot: as if a packet had just left
        # never wait on a time in the future: a file someone else wrote could hold any number
        return Handover(min(sent, now), min(connection, now))


def _open(path: Path) -> int:
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:
        try:  # another user's lease file we may not write: a read-only descriptor still takes the flock
            fd = os.open(path, os.O_RDONLY | flags)
        except OSError as exc:
            raise LeaseError(f"cannot open the lease file {path}: {exc.strerror}") from None
    except OSError as exc:
        raise LeaseError(f"cannot open the lease file {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise LeaseError(f"lease file {path} is not a regular file")
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o666:
        os.fchmod(fd, 0o666)  # the umask narrowed it: other users' scans must be able to record their hand-over
    return fd


def _read(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, _MAX_STATE, 0)
        state = json.loads(data) if data else {}
    except (OSError, ValueError):
        return {"unreadable": True}
    return state if isinstance(state, dict) else {"unreadable": True}


def _write(fd: int, state: dict[str, object]) -> None:
    data = json.dumps(state).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
