"""The probe registry: the built-in probes, then those other packages install under the `otprobe.probes`
entry-point group, so that a new protocol needs no change to otprobe itself.

Nothing here imports a probe module, or the protocol library behind it, until a probe class is asked for: the
built-ins are "module:Class" strings, like entry points. Every class is checked when it is loaded, built-in or
installed alike: it must be a Probe named as it is registered, and every wire code it declares must be on the
central allowlist (otprobe.safety), or it is refused with one line naming the probe, its package and the code.
The order of `names()` is the order probes run per device: the built-ins, then installed probes by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

from otprobe.errors import PolicyViolation
from otprobe.safety import require_declared_read_only

if TYPE_CHECKING:  # loaded with the first probe: names() alone (the CLI's help) needs no pydantic
    from otprobe.contract import Probe

ENTRY_POINT_GROUP = "otprobe.probes"
BUILTIN: dict[str, str] = {
    "s7": "otprobe.probes.s7:S7Probe",
    "enip": "otprobe.probes.enip:EnipProbe",
    "modbus": "otprobe.probes.modbus:ModbusProbe",
    "bacnet": "otprobe.probes.bacnet:BacnetProbe",
    "snmp": "otprobe.probes.snmp:SnmpProbe",
    "opcua": "otprobe.probes.opcua:OpcuaProbe",
}
BUILTIN_PACKAGE = "otprobe (built in)"
# a probe's name is a profile key (protocols.<name>), a --protocol value and an inventory column: keep it plain
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Source:
    """Where a probe class comes from, before it is loaded."""

    name: str
    target: str  # "module:Class"
    package: str  # who installed it, named in every refusal


@cache
def sources() -> tuple[Source, ...]:
    """Every registered probe, built-in first; an installed probe reusing a taken name is listed (and refused when
    loaded), never silently dropped."""
    # here, not at the top: importing importlib.metadata and reading every installed package's metadata costs about
    # 15 ms, which `otprobe --help` and `--version` need not pay
    from importlib.metadata import entry_points

    installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return (
        *(Source(name, target, BUILTIN_PACKAGE) for name, target in BUILTIN.items()),
        *(Source(ep.name, ep.value, f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an unnamed package")
          for ep in installed),
    )


def names() -> tuple[str, ...]:
    """Registered protocol names, in run order, without loading any probe."""
    return tuple(dict.fromkeys(source.name for source in sources()))


@cache
def _load(source: Source) -> type[Probe]:
    where = f"probe {source.name!r} from {source.package}"
    first = next(s for s in sources() if s.name == source.name)
    if first != source:
        raise PolicyViolation(f"{where}: the name is already taken by the probe from {first.package}; refused")
    if not _NAME.match(source.name):
        raise PolicyViolation(f"{where}: a probe name is 1-32 lower-case letters, digits, '-' or '_'; refused")
    from otprobe.contract import Probe

    module, _, attribute = source.target.partition(":")
    try:
        cls = getattr(import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PolicyViolation(f"{where} cannot be loaded ({source.target}: {type(exc).__name__}: {exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, Probe)) or getattr(cls, "name", None) != source.name:
        raise PolicyViolation(f"{where}: {source.target} is not an otprobe Probe named {source.name!r}; refused")
    require_declared_read_only(where, cls.wire_protocol(), [op.code for op in cls.operations])
    return cls


def probe_class(name: str) -> type[Probe]:
    """The probe registered as `name`, loaded and checked on first use; KeyError names the known ones."""
    for source in sources():
        if source.name == name:
            return _load(source)
    raise KeyError(f"unknown protocol {name!r} (known: {', '.join(names())})")


def probe_classes() -> tuple[type[Probe], ...]:
    """Every registered probe, loaded and checked: one refused probe refuses them all (fail closed)."""
    return tuple(_load(source) for source in sources())


def caution_operations() -> frozenset[str]:
    """The operations some probe checks against caution rules before sending them."""
    return frozenset().union(*(cls.caution_operations for cls in probe_classes()))


def source_rank(protocol: str, field: str) -> int:
    """How far `protocol`'s value of identity `field` is trusted when protocols disagree; 0 for a protocol no
    longer registered (an inventory may hold results of a probe since uninstalled)."""
    return probe_class(protocol).rank(field) if protocol in names() else 0
