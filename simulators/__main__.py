"""Command line launcher: `python -m simulators up PLANT... [--record FILE.jsonl]`, `python -m simulators list PLANT`.

`up` runs one or more plants in the foreground until SIGINT or SIGTERM; `list` prints the devices without starting
them. A bad plant file is one line on stderr and exit status 2; a plant that cannot start exits with 1. For a parent
process (simulators/process.py) `up` can also say on a file descriptor when every device listens (`--ready-fd`) and
stop when its stdin ends (`--stop-on-eof`), so that a plant never outlives the process that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from simulators.plant import Plant, PlantError, PlantSpec, PlantStartError, load_plant, running_plant

EXIT_START_FAILED, EXIT_BAD_PLANT = 1, 2


def _describe(spec: PlantSpec) -> str:
    lines = [f"plant {spec.name}: {len(spec.devices)} devices ({spec.source})"]
    for device in spec.devices:
        ports = " ".join(f"{protocol}:{config.port}" for protocol, config in device.protocols.items())
        lines.append(f"  {device.address:<15} {device.name:<20} {device.device_class:<8} {ports}{device.fault_note}")
    return "\n".join(lines)


def _check_distinct(specs: Sequence[PlantSpec]) -> None:
    """Plants run together must not share a device name (the recorded events name devices) or an address."""
    seen: dict[str, str] = {}
    for spec in specs:
        for device in spec.devices:
            for key in (f"device name {device.name}", f"address {device.address}"):
                if key in seen:
                    raise PlantError(f"{spec.source}: {key} is already used by plant {seen[key]}")
                seen[key] = spec.source


def _ready_line(plants: Sequence[Plant]) -> str:
    devices = [
        {"plant": plant.name, "name": device.name, "address": device.address, "class": device.device_class,
         "ports": device.ports}
        for plant in plants
        for device in plant
    ]
    return json.dumps({"pid": os.getpid(), "devices": devices}) + "\n"


def _stop_on_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set `stop` when stdin ends: the parent holding the other end of the pipe has closed it or died."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered read aborts the interpreter at exit
        while os.read(sys.stdin.fileno(), 4096):
            pass
        loop.call_soon_threadsafe(stop.set)

    # a daemon thread: a blocking read is the one portable way to wait for EOF on any kind of stdin
    threading.Thread(target=watch, name="stop-on-eof", daemon=True).start()


async def _up(specs: Sequence[PlantSpec], record: IO[str] | None, ready_fd: int | None, stop_on_eof: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stop_on_eof:
        _stop_on_eof(loop, stop)
    async with contextlib.AsyncExitStack() as stack:
        plants = []
        for spec in specs:
            began = time.monotonic()
            plant = await stack.enter_async_context(running_plant(spec, record_to=record))
            plants.append(plant)
            up_s = time.monotonic() - began
            print(f"plant {plant.name}: {len(plant.devices)} devices up in {up_s:.3f} s", flush=True)
            for device in plant:
                print(f"  {device.summary()}", flush=True)
        if ready_fd is not None:
            # every device's start() has returned: its sockets are bound and listening
            with open(ready_fd, "w", encoding="utf-8") as ready:
                ready.write(_ready_line(plants))
        print("Ctrl-C to stop", flush=True)
        await stop.wait()
    print("plant stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description="Run a simulated OT plant on loopback.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the plant in the foreground until Ctrl-C")
    up.add_argument("plant", nargs="+", help="plant YAML file(s), e.g. simulators/plants/demo.yaml")
    up.add_argument("--record", metavar="FILE.jsonl", help="append every recorded event as a JSON line")
    up.add_argument("--ready-fd", type=int, metavar="FD",
                    help="once every device listens, write one JSON line describing them to FD and close it")
    up.add_argument("--stop-on-eof", action="store_true", help="also stop when stdin reaches end of file")
    listing = commands.add_parser("list", help="print the plant's devices without starting them")
    listing.add_argument("plant", help="plant YAML file")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(_describe(load_plant(args.plant)))
            return 0
        specs = [load_plant(source) for source in args.plant]
        _check_distinct(specs)
    except PlantError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_PLANT
    # pymodbus logs undecodable frames through the last-resort handler; the recorder already notes them
    logging.getLogger("pymodbus").addHandler(logging.NullHandler())
    logging.getLogger("pymodbus").propagate = False
    with contextlib.ExitStack() as stack:
        try:
            record = stack.enter_context(open(args.record, "a", encoding="utf-8")) if args.record else None
        except OSError as exc:
            print(f"{args.record}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_PLANT
        try:
            asyncio.run(_up(specs, record, args.ready_fd, args.stop_on_eof))
        except PlantStartError as exc:
            print(f"cannot start plant: {exc}", file=sys.stderr)
            return EXIT_START_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
