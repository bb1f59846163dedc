"""The audit log: one JSON line per operation intent, outcome and scan event, hash-chained.

Each line is a JSON object whose first keys are `seq` (0, 1, 2, ... across every scan in the file), `t` (UTC,
ISO 8601), `scan` and `type` (`intent`, `outcome` or `event`), whose `prev` is the SHA-256 of the previous line's
bytes (64 zeros for the first line), and whose last key `h` is the SHA-256 of the line up to `h`, so a changed
byte is pinned to its own line. An intent is written to the file (os.write, unbuffered) before the packet leaves,
so a killed process loses nothing; a scan appends to an existing log and continues its chain.

Durability against an OS crash or power loss comes from fsync, done as a group commit by a writer thread (by
default): it fsyncs whatever has been written since its last fsync, at most every GROUP_COMMIT_S (5 ms), so the
event loop never waits on the disk (an fsync takes 1-3 ms, which capped a scan at a few hundred packets per
second). A power loss can cost the records written after the start of the last fsync that completed: at most 5 ms
plus one fsync's duration (docs/design.md, "The audit log's durability window"). Events (scan start and end,
interrupts, overrides) still return only once they are on stable storage.

A hash chain without a key is tamper-evident, not tamper-proof: someone who rewrites every later line can forge
it, and cutting whole lines off the end leaves a valid shorter chain. Record `VerifyResult.last_hash` elsewhere
(a ticket, the inventory) to anchor the end.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otprobe.errors import AuditError

GENESIS = "0" * 64
# The writer thread starts an fsync at most this often: at thousands of records a second, one fsync per record
# (or per few) would cost a thread wake-up and a disk flush each. The durability window is this plus one fsync.
GROUP_COMMIT_S = 0.005
_RESERVED = frozenset({"seq", "t", "scan", "type", "event", "prev", "h"})
_SUFFIX_LEN = len(',"h":"') + 64 + len('"}')


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# one encoder for every line: json.dumps with any non-default argument builds a new one per call
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode


def _seal(record: dict[str, Any]) -> bytes:
    """The line for `record` (without newline), ending in its own hash `h`."""
    body = _encode(record).encode()
    return body[:-1] + b',"h":"' + _sha256(body).encode() + b'"}'


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _last_line(path: Path) -> bytes | None:
    """The file's last line without its newline; None for an empty file. Reads backwards, not the whole file."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return None
        fh.seek(end - 1)
        if fh.read(1) != b"\n":
            raise AuditError(
                f"{path} does not end with a complete line (truncated?): run `otprobe audit verify {path}` and move "
                "the file aside before scanning again"
            )
        position, tail = end - 1, b""
        while position > 0 and b"\n" not in tail:
            step = min(4096, position)
            position -= step
            fh.seek(position)
            tail = fh.read(step) + tail
        return tail.rsplit(b"\n", 1)[-1]


class AuditLog:
    """Append-only, hash-chained JSONL writer; implements `otprobe.link.AuditSink`. Safe to share across threads.

    With `fsync` (the default) a writer thread makes the written lines durable in batches (group commit); `sync()`
    waits for everything written so far, `synced` says how far that has got.
    """

    def __init__(
        self,
        path: str | Path,
        scan_id: str,
        clock: Callable[[], datetime] = _utc_now,
        *,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.scan_id = scan_id
        self._clock = clock
        self._lock = threading.Lock()
        self._durable = threading.Condition(self._lock)  # the writer thread's work, and waiters on a sync
        self._seq, self._prev = self._chain_tail()
        self._failed: str | None = None  # why a write failed: the log refuses every later write
        self.written = 0  # lines written by this log
        self.synced = 0  # of those, lines known to be on stable storage
        self.fsyncs = 0  # fsync calls made, for the group-commit figures
        self._closing = False
        self._idle = False  # the writer thread waits for lines: the next write wakes it
        self._sync_waiters = 0  # callers of sync() waiting: the writer thread skips its pause for them
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered: a failed write leaves no bytes behind in a buffer to reach the file with a later line
            self._fh = self.path.open("ab", buffering=0)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc.strerror}") from None
        self._size = os.fstat(self._fh.fileno()).st_size  # kept, not asked for at every line: the one writer is us
        self._writer: threading.Thread | None = None
        if fsync:
            self._writer = threading.Thread(target=self._group_commit, name="otprobe-audit-fsync", daemon=True)
            self._writer.start()

    def _chain_tail(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        last = _last_line(self.path)
        if last is None:
            return 0, GENESIS
        try:
            seq = json.loads(last)["seq"]
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{self.path}: the last line is not an audit record; verify the file") from None
        return int(seq) + 1, _sha256(last)

    def _write(self, record_type: str, fields: dict[str, Any]) -> int:
        with self._lock:
            if self._closing:
                raise AuditError(f"audit log {self.path} is closed")
            self._raise_if_failed()
            seq = self._seq
            record = {"seq": seq, "t": self._clock().isoformat(), "scan": self.scan_id, "type": record_type}
            record |= fields
            record["prev"] = self._prev
            line = _seal(record)
            self._append(line + b"\n")
            self._seq, self._prev = seq + 1, _sha256(line)
            self.written += 1
            if self._idle:
                self._durable.notify_all()  # wakes the writer thread; in its pause it is left to gather lines
            return seq

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise AuditError(f"audit log {self.path} failed earlier ({self._failed}); nothing more is written")

    def _append(self, data: bytes) -> None:
        """Write one whole line or leave the file as it was, so the chain on disk stays valid up to the failure."""
        fd = self._fh.fileno()
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write")
        except OSError as exc:
            self._failed = exc.strerror or str(exc)
            with suppress(OSError):  # if even this fails, `audit verify` reports the cut-off line
                os.ftruncate(fd, self._size)
            raise AuditError(f"cannot write audit log {self.path}: {self._failed}") from None
        self._size += len(data)

    def _group_commit(self) -> None:
        """The writer thread: fsync every line written since the last fsync, in one call, until the log closes.

        Lines written while an fsync runs, and in the GROUP_COMMIT_S pause after it, go in the next one: under load
        one fsync covers many records, and the records a power loss can cost are those written since the start of
        the last fsync that completed, at most GROUP_COMMIT_S plus one fsync's time.
        """
        with self._lock:
            while True:
                while self.synced == self.written and not self._closing and self._failed is None:
                    self._idle = True
                    self._durable.wait()
                self._idle = False
                if self.synced == self.written or self._failed is not None:
                    return  # closing with nothing left to sync, or failed
                target, fd = self.written, self._fh.fileno()
                self._lock.release()
                started = time.monotonic()
                try:
                    os.fsync(fd)
                    error = None
                except OSError as exc:
                    error = exc.strerror or str(exc)
                finally:
                    self._lock.acquire()
                self.fsyncs += 1
                if error is not None:
                    self._failed = f"fsync: {error}"
                else:
                    self.synced = max(self.synced, target)
                self._durable.notify_all()
                # lines gather in the pause; a close or a caller waiting in sync() ends it
                while not self._closing and not self._sync_waiters:
                    pause = started + GROUP_COMMIT_S - time.monotonic()
                    if pause <= 0:
                        break
                    self._durable.wait(pause)

    def sync(self) -> None:
        """Return once every line written so far is on stable storage (at once without the writer thread)."""
        with self._lock:
            target = self.written
            self._sync_waiters += 1
            try:
                while self._writer is not None and self.synced < target and self._failed is None:
                    self._durable.notify_all()
                    self._durable.wait()
            finally:
                self._sync_waiters -= 1
            self._raise_if_failed()

    def intent(self, *, device: str, protocol: str, operation: str, code: str, packets: int) -> int:
        """Record an operation about to be sent; returns its record id. In the file before this returns (a killed
        process loses nothing); on stable storage once the writer thread's next fsync completes."""
        fields = {"device": device, "protocol": protocol, "operation": operation, "code": code, "packets": packets}
        return self._write("intent", fields)

    def outcome(self, record_id: int, outcome: str, detail: str | None = None) -> None:
        self._write("outcome", {"ref": record_id, "outcome": outcome, "detail": detail})

    def event(self, kind: str, **fields: Any) -> int:
        """A scan-level record: scan_start, scan_stop, override (with its reason), deadline, interrupt... On stable
        storage before this returns."""
        clash = _RESERVED & fields.keys()
        if clash:
            raise ValueError(f"audit event fields may not be named {', '.join(sorted(clash))}")
        seq = self._write("event", {"event": kind, **fields})
        self.sync()
        return seq

    def close(self) -> None:
        """Make every line durable, stop the writer thread and close the file. Closing twice is harmless."""
        with suppress(AuditError):  # a failed log was reported where it failed; closing still releases it
            self.sync()
        with self._lock:
            self._closing = True
            self._durable.notify_all()
        if self._writer is not None:
            self._writer.join()  # before the file closes: its descriptor must not be fsync'd after it is reused
        self._fh.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class VerifyResult:
    """Outcome of `verify`. `bad_line` is 1-based; `last_hash` anchors the end of an intact chain."""

    ok: bool
    records: int
    bad_line: int | None = None
    reason: str | None = None
    last_hash: str = GENESIS
    scans: list[str] = field(default_factory=list)


def _check_line(raw: bytes, expected_seq: int, expected_prev: str) -> tuple[str | None, dict[str, Any]]:
    """(why this line breaks the chain or None, the parsed record)."""
    if len(raw) <= _SUFFIX_LEN or not raw.startswith(b"{"):
        return "not an audit record", {}
    try:
        record = json.loads(raw)
    except ValueError:
        return "not valid JSON (edited or damaged)", {}
    if not isinstance(record, dict) or record.get("h") != _sha256(raw[:-_SUFFIX_LEN] + b"}"):
        return "content does not match its own hash (edited)", {}
    if record.get("seq") != expected_seq:
        return f"seq is {record.get('seq')}, expected {expected_seq}: a record before it is missing or out of order", {}
    if record.get("prev") != expected_prev:
        return "prev does not match the hash of the line before it (lines removed, reordered or edited)", {}
    return None, record


def verify(path: str | Path) -> VerifyResult:
    """Check the whole chain of an audit log; stops at the first bad line."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    result = VerifyResult(ok=True, records=0)
    with fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return _bad(result, number, "the line is cut off (file truncated mid-line)")
            reason, record = _check_line(line[:-1], result.records, result.last_hash)
            if reason is not None:
                return _bad(result, number, reason)
            if not result.scans or result.scans[-1] != record["scan"]:
                result.scans.append(record["scan"])
            result.records += 1
            result.last_hash = _sha256(line[:-1])
    return result


def _bad(result: VerifyResult, line: int, reason: str) -> VerifyResult:
    result.ok, result.bad_line, result.reason = False, line, reason
    return result
