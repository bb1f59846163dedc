"""Plant files: loading and validating a plant YAML, and running every device it declares.

`load_plant` turns a file (or an already-parsed dict) into a `PlantSpec`; every mistake becomes one
`PlantError` line naming the file and the key, e.g. `plants/bad.yaml: devices[3].address: 10.0.0.1 is not in
127.0.0.0/8`. Protocol sections are validated by their simulator modules (`modbus_sim`, `s7_sim`, `enip_sim`,
`bacnet_sim`, `snmp_sim`, `opcua_sim`, each exposing PROTOCOL, parse_config and a Device class). `running_plant` starts
every device concurrently and stops them all on exit; `relocate` moves a plant onto other addresses or ports for tests;
`bundled_plant` finds a plant file shipped in `simulators/plants/`, from a checkout or an installed package.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import yaml

from simulators.faults import Fault, FaultMode
from simulators.recorder import Recorder

PROTOCOL_MODULES = {"modbus": "simulators.modbus_sim", "s7": "simulators.s7_sim", "enip": "simulators.enip_sim",
                    "bacnet": "simulators.bacnet_sim", "snmp": "simulators.snmp_sim", "opcua": "simulators.opcua_sim"}
PLANT_KEYS = {"plant", "description", "ports", "devices"}
DEVICE_KEYS = {"name", "address", "class", "fault", "description", *PROTOCOL_MODULES}
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CLASS_RE = re.compile(r"^[a-z][a-z0-9_-]*$")

PlantSource = str | os.PathLike[str] | Mapping[str, Any]


class PlantError(Exception):
    """A plant file that cannot be used; the message is one line naming the file and the key."""


class PlantStartError(PlantError):
    """A valid plant whose devices could not all be started (address in use, port needs root...)."""


class ProtocolDevice(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def summary(self) -> str: ...


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    address: str
    device_class: str
    fault: Fault
    protocols: Mapping[str, Any]  # protocol name -> that module's parsed config
    description: str = ""

    @property
    def fault_note(self) -> str:
        return "" if self.fault.mode is FaultMode.NONE else f"  [fault: {self.fault.mode.value}]"


@dataclass(frozen=True)
class PlantSpec:
    name: str
    description: str
    source: str
    devices: tuple[DeviceSpec, ...]


# -- loading ------------------------------------------------------------------------------------------


def read_plant(source: PlantSource) -> tuple[str, dict[str, Any]]:
    """(label for messages, raw plant mapping) of a path or a mapping."""
    if isinstance(source, Mapping):
        return f"<plant {source.get('plant', 'dict')}>", copy.deepcopy(dict(source))
    label = os.fspath(source)
    try:
        text = Path(label).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlantError(f"{label}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PlantError(f"{label}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise PlantError(f"{label}: must be a mapping with a devices list")
    return label, raw


def bundled_plant(name: str) -> Path:
    """The file of a plant shipped with the simulators (`demo`, `standard`), wherever the package is installed."""
    # pip unpacks the package, so a bundled plant is a plain file that read_plant opens and messages name by path
    return Path(str(resources.files("simulators").joinpath("plants", f"{name}.yaml")))


def protocol_module(protocol: str) -> ModuleType:
    """The simulator module of a protocol; ModuleNotFoundError only when that very module is missing."""
    return importlib.import_module(PROTOCOL_MODULES[protocol])


def load_plant(source: PlantSource) -> PlantSpec:
    label, raw = read_plant(source)
    unknown = sorted(set(raw) - PLANT_KEYS, key=str)
    if unknown:
        raise _error(label, str(unknown[0]), f"unknown key (known: {', '.join(sorted(PLANT_KEYS))})")
    ports = raw.get("ports") or {}
    if not isinstance(ports, dict) or set(ports) - set(PROTOCOL_MODULES):
        raise _error(label, "ports", f"must map protocol names ({', '.join(PROTOCOL_MODULES)}) to port numbers")
    devices = raw.get("devices")
    if not isinstance(devices, list) or not devices:
        raise _error(label, "devices", "must be a non-empty list of devices")
    specs: list[DeviceSpec] = []
    for index, entry in enumerate(devices):
        spec = _load_device(label, f"devices[{index}]", entry, ports)
        for earlier in specs:
            if earlier.name == spec.name:
                raise _error(label, f"devices[{index}].name", f"{spec.name} is already used")
            if earlier.address == spec.address:
                raise _error(label, f"devices[{index}].address", f"{spec.address} is already used by {earlier.name}")
        specs.append(spec)
    default_name = "plant" if isinstance(source, Mapping) else Path(label).stem
    return PlantSpec(str(raw.get("plant", default_name)), str(raw.get("description", "")), label, tuple(specs))


def _error(label: str, key: str, message: str) -> PlantError:
    return PlantError(f"{label}: {key}: {message}")


def _load_device(label: str, where: str, entry: Any, ports: Mapping[str, Any]) -> DeviceSpec:
    if not isinstance(entry, dict):
        raise _error(label, where, "must be a mapping (name, address, class, protocol sections)")
    unknown = sorted(set(entry) - DEVICE_KEYS, key=str)
    if unknown:
        raise _error(label, f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(DEVICE_KEYS))})")
    for key in ("name", "address", "class"):
        if key not in entry:
            raise _error(label, f"{where}.{key}", "missing")
    name, device_class = str(entry["name"]), str(entry["class"])
    if not NAME_RE.match(name):
        raise _error(label, f"{where}.name", f"{name!r} is not a device name (letters, digits, . _ -)")
    if not CLASS_RE.match(device_class):
        raise _error(label, f"{where}.class", f"{device_class!r} is not a device class such as plc, hmi, meter")
    address = _loopback(label, where, entry["address"])
    try:
        fault = Fault.from_spec(entry.get("fault"))
    except ValueError as exc:
        raise PlantError(f"{label}: {where}.{exc}") from None
    protocols: dict[str, Any] = {}
    for protocol in PROTOCOL_MODULES:
        if protocol not in entry:
            continue
        section = entry[protocol] or {}
        if not isinstance(section, dict):
            raise _error(label, f"{where}.{protocol}", "must be a mapping of settings")
        if protocol in ports and "port" not in section:
            section = {"port": ports[protocol], **section}
        try:
            module = protocol_module(protocol)
        except ModuleNotFoundError as exc:
            if exc.name != PROTOCOL_MODULES[protocol]:
                raise
            raise _error(label, f"{where}.{protocol}", f"simulator module {exc.name} is not available") from None
        try:
            protocols[protocol] = module.parse_config(section)
        except (ValueError, TypeError) as exc:
            # protocol modules raise "<key>: <message>", some already prefixed with the protocol name
            message = str(exc)
            if not message.startswith((f"{protocol}.", f"{protocol}:")):
                message = f"{protocol}.{message}"
            raise PlantError(f"{label}: {where}.{message}") from None
    if not protocols:
        raise _error(label, where, f"{name} declares no protocol section ({', '.join(PROTOCOL_MODULES)})")
    if fault.mode is FaultMode.ENDLESS and "modbus" not in protocols:
        raise _error(label, f"{where}.fault", "endless_more_follows is a Modbus FC43 fault: this device has no modbus")
    return DeviceSpec(name, address, device_class, fault, protocols, str(entry.get("description", "")))


def _loopback(label: str, where: str, value: Any) -> str:
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        raise _error(label, f"{where}.address", f"{value} is not an IPv4 address") from None
    if address.version != 4 or address not in LOOPBACK:
        raise _error(label, f"{where}.address", f"{value} is not in {LOOPBACK}")
    return str(address)


def relocate(
    source: PlantSource, *, third_octet_shift: int = 0, ports: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """A copy of a plant moved for tests: 127.a.b.c becomes 127.a.(b + shift).c; `ports` ({"modbus": 15020})
    are written into every device's protocol section, so each device dict stands on its own."""
    label, raw = read_plant(source)
    for index, device in enumerate(raw.get("devices") or []):
        if not isinstance(device, dict) or "address" not in device:
            continue
        octets = str(device["address"]).split(".")
        if len(octets) != 4 or not octets[2].isdigit() or not 0 <= int(octets[2]) + third_octet_shift <= 255:
            raise PlantError(f"{label}: devices[{index}].address: cannot shift {device['address']}")
        octets[2] = str(int(octets[2]) + third_octet_shift)
        device["address"] = ".".join(octets)
        for protocol, port in (ports or {}).items():
            if protocol in device:
                device[protocol] = {**(device[protocol] or {}), "port": port}
    return raw


# -- running ------------------------------------------------------------------------------------------


class RunningDevice:
    """One started device: its spec, its recorder (shared by its protocols), its protocol servers."""

    def __init__(self, spec: DeviceSpec, recorder: Recorder) -> None:
        self.spec = spec
        self.recorder = recorder
        self.servers: dict[str, ProtocolDevice] = {
            protocol: _device_class(protocol)(spec.address, config, spec.fault, recorder)
            for protocol, config in spec.protocols.items()
        }

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def device_class(self) -> str:
        return self.spec.device_class

    @property
    def ports(self) -> dict[str, int]:
        """Port of each protocol (the bound one when the server reports it, else the configured one)."""
        return {
            protocol: getattr(server, "port", None) or self.spec.protocols[protocol].port
            for protocol, server in self.servers.items()
        }

    def summary(self) -> str:
        parts = "; ".join(server.summary() for server in self.servers.values())
        return f"{self.address:<15} {self.name:<20} {self.device_class:<8} {parts}{self.spec.fault_note}"


def _device_class(protocol: str) -> type[ProtocolDevice]:
    module = protocol_module(protocol)
    # modbus_sim.ModbusDevice, s7_sim.S7Device, enip_sim.EnipDevice
    for name in (f"{module.PROTOCOL.capitalize()}Device", f"{module.PROTOCOL.upper()}Device"):
        if hasattr(module, name):
            return getattr(module, name)
    raise PlantError(f"{module.__name__} has no device class for {protocol}")


class Plant:
    """A running plant: `plant.devices["mcc-m340"].recorder`, iteration yields RunningDevice objects."""

    def __init__(self, spec: PlantSpec, devices: list[RunningDevice]) -> None:
        self.spec = spec
        self.name = spec.name
        self.devices: dict[str, RunningDevice] = {device.name: device for device in devices}

    def __getitem__(self, name: str) -> RunningDevice:
        return self.devices[name]

    def __iter__(self) -> Iterator[RunningDevice]:
        return iter(self.devices.values())

    def by_address(self, address: str) -> RunningDevice:
        return next(device for device in self if device.address == address)


@asynccontextmanager
async def running_plant(source: PlantSource | PlantSpec, record_to: IO[str] | None = None) -> AsyncIterator[Plant]:
    """Start every device of a plant concurrently; stop them all on exit. Events go to `record_to` as JSON lines."""
    spec = source if isinstance(source, PlantSpec) else load_plant(source)
    plant = Plant(spec, [RunningDevice(device, Recorder(device.name, record_to)) for device in spec.devices])
    servers = [(device, protocol, server) for device in plant for protocol, server in device.servers.items()]
    results = await asyncio.gather(*(server.start() for _, _, server in servers), return_exceptions=True)
    started = [server for (_, _, server), result in zip(servers, results, strict=True) if result is None]
    try:
        for (device, protocol, _), result in zip(servers, results, strict=True):
            if isinstance(result, BaseException):
                raise PlantStartError(f"{device.name} ({device.address}) {protocol}: {result}") from result
        yield plant
    finally:
        await asyncio.gather(*(server.stop() for server in started), return_exceptions=True)
