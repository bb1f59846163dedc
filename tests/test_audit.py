"""Audit log: intents on disk before the packet, the hash chain across scans, and verify's first bad line."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest

from otprobe import audit as audit_module
from otprobe.audit import GENESIS, AuditLog, verify
from otprobe.contract import Kind, Operation, Probe
from otprobe.errors import AuditError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target


def fake_clock() -> Callable[[], datetime]:
    ticks = iter(range(1_000_000))
    start = datetime(2026, 3, 28, 2, 0, tzinfo=UTC)
    return lambda: start + timedelta(milliseconds=next(ticks))


def write_scan(path: Path, scan_id: str, devices: int = 3) -> None:
    with AuditLog(path, scan_id, fake_clock(), fsync=False) as log:
        log.event("scan_start", profile="lab", targets=devices)
        for n in range(devices):
            record = log.intent(
                device=f"127.0.1.{n + 1}", protocol="modbus", operation="read_device_id", code="fc:0x2B/mei:0x0E",
                packets=1,
            )
            log.outcome(record, "ok")
        log.event("scan_stop", complete=True)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_carry_seq_time_scan_and_the_previous_line_hash(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1", devices=1)
    records = [json.loads(line) for line in lines_of(path)]
    assert [r["type"] for r in records] == ["event", "intent", "outcome", "event"]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert records[0]["prev"] == GENESIS
    assert records[1]["prev"] == hashlib.sha256(lines_of(path)[0].rstrip(b"\n")).hexdigest()
    assert records[2]["ref"] == records[1]["seq"]
    assert records[1]["t"] == "2026-03-28T02:00:00.001000+00:00"
    assert {r["scan"] for r in records} == {"scan-1"}
    assert verify(path).ok and verify(path).records == 4


class BlockedFsync:
    """Stands in for os.fsync: records the thread and the file size of each call, and blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[tuple[str, int]] = []

    def __call__(self, fd: int) -> None:
        self.calls.append((threading.current_thread().name, os.fstat(fd).st_size))
        self.started.set()
        if not self.release.wait(10):
            raise AssertionError("fsync never released")


INTENT = {"device": "127.0.1.1", "protocol": "s7", "operation": "connect", "code": "tcp:connect", "packets": 1}


def test_intent_is_in_the_file_before_it_returns_while_the_fsync_runs_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = BlockedFsync()
    monkeypatch.setattr(audit_module.os, "fsync", fsync)
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "scan-1", fake_clock())
    record = log.intent(**INTENT)  # returns although the disk has not confirmed anything yet
    assert json.loads(path.read_bytes())["seq"] == record  # read through another handle, log still open
    assert fsync.started.wait(5)  # the writer thread took it up...
    assert log.synced == 0  # ...and the caller did not wait for it
    fsync.release.set()
    log.sync()
    assert log.synced == log.written == 1
    [(thread, size)] = fsync.calls
    assert thread != threading.current_thread().name and size == path.stat().st_size
    log.close()


def test_one_fsync_covers_every_record_written_while_the_previous_one_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = BlockedFsync()
    monkeypatch.setattr(audit_module.os, "fsync", fsync)
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "scan-1", fake_clock()) as log:
        log.outcome(log.intent(**INTENT), "ok")
        assert fsync.started.wait(5)
        for _ in range(49):  # written while the first fsync is stuck at the disk
            log.outcome(log.intent(**INTENT), "ok")
        assert log.synced == 0
        fsync.release.set()
        log.sync()
        assert log.synced == 100
        assert log.fsyncs == len(fsync.calls) <= 2  # group commit: not one per record
        assert fsync.calls[-1][1] == path.stat().st_size
    assert verify(path).records == 100


def test_an_event_returns_only_once_it_is_on_stable_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(audit_module.os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size))
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "scan-1", fake_clock()) as log:
        log.event("scan_start", profile="lab")
        assert synced and synced[-1] == path.stat().st_size


def test_a_failed_fsync_refuses_every_later_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(audit_module.os, "fsync", broken)
    log = AuditLog(tmp_path / "audit.jsonl", "scan-1", fake_clock())
    log.intent(**INTENT)
    with pytest.raises(AuditError, match="Input/output error"):
        log.sync()
    with pytest.raises(AuditError, match="failed earlier"):
        log.intent(**INTENT)
    log.close()
    assert verify(tmp_path / "audit.jsonl").ok


_KILLED_AFTER_INTENTS = """
import os, sys, threading
from otprobe import audit
audit.os.fsync = lambda fd: threading.Event().wait()  # the disk never confirms anything
log = audit.AuditLog(sys.argv[1], "scan-1")
for n in range(20):
    log.intent(device=f"127.0.1.{n + 1}", protocol="s7", operation="connect", code="tcp:connect", packets=1)
print("sent", flush=True)
threading.Event().wait()
"""


def test_a_killed_process_loses_no_intent_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_AFTER_INTENTS, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"sent\n"
    finally:
        child.kill()  # SIGKILL: no clean-up, no flush, the writer thread dies mid-fsync
        child.wait()
    result = verify(path)
    assert (result.ok, result.records) == (True, 20)


def test_a_failed_write_leaves_a_valid_chain_and_refuses_every_later_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "scan-1", fake_clock(), fsync=False)
    for n in range(2):
        log.event("note", n=n)
    real_write = audit_module.os.write

    def disk_full(fd: int, data: bytes) -> int:
        if fd == log._fh.fileno():  # half the line reaches the disk, then the disk is full
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(audit_module.os, "write", disk_full)
    with pytest.raises(AuditError, match="No space left on device"):
        log.event("note", n=2)
    monkeypatch.undo()  # the disk has room again; the log must still not write past the gap
    with pytest.raises(AuditError, match="failed earlier"):
        log.intent(device="127.0.1.1", protocol="s7", operation="connect", code="tcp:connect", packets=1)
    log.close()
    result = verify(path)
    assert (result.ok, result.records) == (True, 2)
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 1]


class _ConnectOnly(Probe):
    name = "modbus"
    transports = ("tcp",)
    default_port = 5020
    operations: ClassVar[tuple[Operation, ...]] = (Operation("connect", "tcp:connect", Kind.CONNECT),)

    def max_packets(self) -> int:
        return 1

    async def run(self, link: Link, target: Target) -> Observation:
        return Observation(target.ip, self.name, self.port, Status.NO_IDENTITY)


async def test_the_link_writes_the_intent_before_the_library_call_and_the_outcome_after(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, "scan-1", fake_clock(), fsync=False) as log:
        link = Link(_ConnectOnly(), Target("127.0.1.1"), audit=log)
        async with link.op("connect"):
            seen_during_call = [json.loads(line) for line in lines_of(path)]
    assert [(r["type"], r["device"], r["code"]) for r in seen_during_call] == [("intent", "127.0.1.1", "tcp:connect")]
    final = [json.loads(line) for line in lines_of(path)]
    assert (final[1]["type"], final[1]["ref"], final[1]["outcome"]) == ("outcome", 0, "ok")


def test_appending_a_second_scan_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    write_scan(path, "scan-2")
    result = verify(path)
    assert result.ok, result.reason
    assert (result.records, result.scans) == (16, ["scan-1", "scan-2"])
    second = json.loads(lines_of(path)[8])
    assert (second["seq"], second["scan"]) == (8, "scan-2")
    assert second["prev"] == hashlib.sha256(lines_of(path)[7].rstrip(b"\n")).hexdigest()
    assert result.last_hash == hashlib.sha256(lines_of(path)[-1].rstrip(b"\n")).hexdigest()


def test_one_edited_byte_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    lines = lines_of(path)
    lines[3] = lines[3].replace(b"127.0.1.2", b"127.0.1.9")  # line 4: still valid JSON
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert (result.ok, result.bad_line, result.records) == (False, 4, 3)
    assert "edited" in (result.reason or "")


def test_an_edit_that_breaks_json_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    data = bytearray(path.read_bytes())
    data[len(lines_of(path)[0]) + 1] = ord("#")  # second byte of line 2
    path.write_bytes(bytes(data))
    assert verify(path).bad_line == 2


def test_a_forged_line_with_a_recomputed_own_hash_breaks_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    lines = lines_of(path)
    record = json.loads(lines[3])
    del record["h"]
    record["packets"] = 0
    lines[3] = audit_module._seal(record) + b"\n"
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert (result.bad_line, result.records) == (5, 4)
    assert "prev does not match" in (result.reason or "")


@pytest.mark.parametrize(
    ("mangle", "bad_line"),
    [
        (lambda lines: lines[:2] + lines[3:], 3),  # a line deleted
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2),  # two lines swapped
        (lambda lines: lines[1:], 1),  # the first line deleted
    ],
    ids=["deleted", "reordered", "head-deleted"],
)
def test_deleted_and_reordered_lines_are_detected(
    tmp_path: Path, mangle: Callable[[list[bytes]], list[bytes]], bad_line: int
) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    path.write_bytes(b"".join(mangle(lines_of(path))))
    result = verify(path)
    assert (result.ok, result.bad_line) == (False, bad_line)


def test_truncation_mid_line_is_detected_and_blocks_appending(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_scan(path, "scan-1")
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    result = verify(path)
    assert (result.ok, result.bad_line) == (False, len(lines_of(path)))
    assert "cut off" in (result.reason or "")
    with pytest.raises(AuditError, match="does not end with a complete line"):
        AuditLog(path, "scan-2", fake_clock())


def test_appending_to_a_file_that_is_not_an_audit_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n")
    with pytest.raises(AuditError, match="not an audit record"):
        AuditLog(path, "scan-1", fake_clock())


def test_worker_threads_share_one_log_without_breaking_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ids: list[int] = []
    with AuditLog(path, "scan-1", fake_clock(), fsync=False) as log:

        def worker(n: int) -> None:
            for _ in range(100):
                record = log.intent(device=f"127.0.2.{n}", protocol="s7", operation="szl", code="szl:0x0011", packets=1)
                ids.append(record)
                log.outcome(record, "ok")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify(path)
    assert result.ok, result.reason
    assert result.records == 1600
    assert len(set(ids)) == 800


def test_event_fields_cannot_overwrite_chain_fields(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", "scan-1", fake_clock(), fsync=False) as log:
        record = log.event("override", flag="--ignore-window", reason="plant stopped for repair, ticket 7")
        with pytest.raises(ValueError, match="prev"):
            log.event("scan_stop", prev="0" * 64)
    assert json.loads((tmp_path / "audit.jsonl").read_bytes())["reason"] == "plant stopped for repair, ticket 7"
    assert record == 0
