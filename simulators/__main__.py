"""Command line launcher: `python -m simulators up PLANT [--record FILE.jsonl]` and `python -m simulators list PLANT`.

`up` runs the plant in the foreground until SIGINT or SIGTERM; `list` prints the devices without starting
them. A bad plant file is one line on stderr and exit status 2; a plant that cannot start exits with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import IO

from simulators.plant import PlantError, PlantSpec, PlantStartError, load_plant, running_plant

EXIT_START_FAILED, EXIT_BAD_PLANT = 1, 2


def _describe(spec: PlantSpec) -> str:
    lines = [f"plant {spec.name}: {len(spec.devices)} devices ({spec.source})"]
    for device in spec.devices:
        ports = " ".join(f"{protocol}:{config.port}" for protocol, config in device.protocols.items())
        lines.append(f"  {device.address:<15} {device.name:<20} {device.device_class:<8} {ports}{device.fault_note}")
    return "\n".join(lines)


async def _up(spec: PlantSpec, record: IO[str] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    began = time.monotonic()
    async with running_plant(spec, record_to=record) as plant:
        print(f"plant {plant.name}: {len(plant.devices)} devices up in {time.monotonic() - began:.3f} s", flush=True)
        for device in plant:
            print(f"  {device.summary()}", flush=True)
        print("Ctrl-C to stop", flush=True)
        await stop.wait()
    print("plant stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators", description="Run a simulated OT plant on loopback.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the plant in the foreground until Ctrl-C")
    up.add_argument("plant", help="plant YAML file, e.g. simulators/plants/demo.yaml")
    up.add_argument("--record", metavar="FILE.jsonl", help="append every recorded event as a JSON line")
    listing = commands.add_parser("list", help="print the plant's devices without starting them")
    listing.add_argument("plant", help="plant YAML file")
    args = parser.parse_args(argv)
    try:
        spec = load_plant(args.plant)
    except PlantError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_PLANT
    if args.command == "list":
        print(_describe(spec))
        return 0
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
            asyncio.run(_up(spec, record))
        except PlantStartError as exc:
            print(f"cannot start plant: {exc}", file=sys.stderr)
            return EXIT_START_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
