"""A plant in its own process: start it, wait until every device listens, get each device's recorder back, stop it.

Tests and benches that judge pacing at the receiver need receivers whose stamps do not wait for the scanner's event
loop or compete with it for the GIL. `PlantProcess` runs `python -m simulators up` on one or more plants (paths or
dicts), waits for the launcher's readiness line (written on a pipe once every device's sockets listen, not after a
sleep), and rebuilds `Recorder`s from the JSON-lines events the child writes. Their time.monotonic() stamps are
CLOCK_MONOTONIC, one clock for the whole machine on Linux, so they compare directly with the caller's own.

The child never outlives its parent: `stop()` (and leaving the `with` block, even on an exception) sends SIGTERM
and kills after a grace period, and the child also stops when its stdin, a pipe only the parent holds, reaches end
of file, which happens when the parent dies however it dies.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from simulators.plant import PlantSource
from simulators.recorder import Recorder

ROOT = Path(__file__).resolve().parent.parent


class PlantProcessError(Exception):
    """The child plant did not come up, or did not stop cleanly; the message carries its stderr."""


@dataclass(frozen=True)
class DeviceInfo:
    """One device of the running child, as its readiness line describes it."""

    plant: str
    name: str
    address: str
    device_class: str
    ports: dict[str, int]


class PlantProcess:
    """`with PlantProcess(plant_a, "simulators/plants/demo.yaml") as plants: ...; plants.recorders_by_address()`."""

    def __init__(self, *sources: PlantSource, ready_timeout_s: float = 60.0, stop_timeout_s: float = 10.0) -> None:
        if not sources:
            raise ValueError("PlantProcess needs at least one plant")
        self._sources = sources
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.devices: dict[str, DeviceInfo] = {}
        self.returncode: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._events: list[dict[str, Any]] | None = None  # kept once the child has stopped

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> PlantProcess:
        """Start the child and return once every device listens; raise PlantProcessError if it cannot."""
        if self._process is not None:
            raise RuntimeError("this PlantProcess was already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="simulators-plant-"))
        paths = [self._plant_file(index, source) for index, source in enumerate(self._sources)]
        ready_read, ready_write = os.pipe()
        try:
            with open(self._workdir / "stdout.txt", "wb") as out, open(self._workdir / "stderr.txt", "wb") as err:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "simulators", "up", *paths, "--record", str(self._record),
                     "--ready-fd", str(ready_write), "--stop-on-eof"],
                    cwd=ROOT, stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(ready_write,),
                    # its own session: a Ctrl-C at the terminal reaches the parent, which then stops the child
                    start_new_session=True,
                )
            os.close(ready_write)  # the child holds the only write end now: EOF means it exited
            ready_write = -1
            line = self._read_ready(ready_read)
        except BaseException:
            self.stop(check=False)
            raise
        finally:
            os.close(ready_read)
            if ready_write >= 0:
                os.close(ready_write)
        for device in json.loads(line)["devices"]:
            self.devices[device["name"]] = DeviceInfo(
                device["plant"], device["name"], device["address"], device["class"], device["ports"]
            )
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, check: bool = True) -> int | None:
        """Stop the child (`sig`, then SIGKILL after stop_timeout_s), keep its events, remove its files. With
        `check`, a child that did not exit with 0 raises PlantProcessError. Stopping twice is harmless."""
        process = self._process
        if process is not None and self.returncode is None:
            if process.poll() is None:
                process.send_signal(sig)
                try:
                    process.wait(self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdin is not None:
                process.stdin.close()
            self.returncode = process.returncode
        if self._workdir is not None:
            self._events = self._read_events()
            stderr = self._stderr()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            if check and self.returncode != 0:
                raise PlantProcessError(f"plant process exited with {self.returncode}: {stderr}")
        return self.returncode

    def __enter__(self) -> PlantProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # a failing body keeps its own exception; a clean one also learns that the plant did not stop cleanly
        self.stop(check=kind is None)

    # -- what the devices recorded ------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every event recorded so far (all of them once stopped), as parsed JSON lines in the order written."""
        return self._events if self._events is not None else self._read_events()

    def recorders(self) -> dict[str, Recorder]:
        """A Recorder per device name, rebuilt from the events so far."""
        events = self.events()
        return {name: Recorder.from_events(name, events) for name in self.devices}

    def recorders_by_address(self) -> dict[str, Recorder]:
        return {self.devices[name].address: recorder for name, recorder in self.recorders().items()}

    # -- internals ---------------------------------------------------------------------------------------------

    @property
    def _record(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "events.jsonl"

    def _plant_file(self, index: int, source: PlantSource) -> str:
        if isinstance(source, (str, os.PathLike)):
            return os.fspath(Path(source).resolve())  # the child runs from the repository root
        assert self._workdir is not None
        path = self._workdir / f"plant-{index}.yaml"
        path.write_text(yaml.safe_dump(dict(source), sort_keys=False), encoding="utf-8")
        return str(path)

    def _read_ready(self, fd: int) -> str:
        deadline = time.monotonic() + self.ready_timeout_s
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise PlantProcessError(f"plant not listening after {self.ready_timeout_s:.0f} s: {self._stderr()}")
            chunk = os.read(fd, 65536)
            if not chunk:  # the child exited before every device listened
                assert self._process is not None
                code = self._process.wait()
                raise PlantProcessError(f"plant process exited with {code} before it was ready: {self._stderr()}")
            data += chunk
        return data.decode("utf-8")

    def _stderr(self) -> str:
        assert self._workdir is not None
        path = self._workdir / "stderr.txt"
        return path.read_text(encoding="utf-8", errors="replace").strip() if path.exists() else ""

    def _read_events(self) -> list[dict[str, Any]]:
        assert self._workdir is not None
        if not self._record.exists():
            return []
        lines = self._record.read_text(encoding="utf-8").split("\n")
        # the last element is "" after a whole line, or a line the child is still writing: not an event yet
        return [json.loads(line) for line in lines[:-1]]
