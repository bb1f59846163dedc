"""Merge ranks are each probe's declaration: the registry's ranks decide which protocol's value of an identity field
wins, field by field, and a probe may trust single fields more or less than the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from otprobe.contract import Probe
from otprobe.inventory.merge import merge
from otprobe.model import Identity, Observation, Status
from otprobe.probes import names, probe_class, source_rank


def seen(protocol: str, **fields: str) -> Observation:
    return Observation("127.0.1.10", protocol, 1, Status.IDENTIFIED, identity=Identity(**fields))


# the same device as three protocols describe it, in the order a scan might finish them
SEEN = [seen("modbus", vendor="Siemens AG", model="CPU (gateway)", firmware="v3.2.7"),
        seen("enip", vendor="Siemens", model="CPU 315-2 PN/DP (comm)", firmware="3.2.6", serial="ENIP-1"),
        seen("s7", vendor="Siemens", model="CPU 315-2 PN/DP", firmware="V3.2.8")]


def test_the_registry_ranks_are_the_probes_declarations() -> None:
    assert [source_rank(name, "firmware") for name in ("s7", "enip", "modbus")] == [3, 2, 1]
    assert all(source_rank(name, "serial") == probe_class(name).merge_rank for name in names())
    assert source_rank("uninstalled-probe", "firmware") == 0  # results of a probe no longer registered
    merged = merge(SEEN)
    assert merged is not None
    assert (merged.get("model"), merged.sources["model"]) == ("CPU 315-2 PN/DP", "s7")
    assert merged.sources["serial"] == "enip"  # the only source that has one
    assert (merged.get("firmware"), merged.sources["firmware"]) == ("V3.2.8", "s7")
    assert merged.conflicts["firmware"] == {"s7": "V3.2.8", "enip": "3.2.6", "modbus": "v3.2.7"}  # most trusted first


def test_a_field_rank_overrides_the_probe_rank_for_that_field_only() -> None:
    class Gateway(Probe):  # ranks below everything, but is the one source trusted for firmware
        name = "modbus"
        merge_rank = 0
        field_ranks: ClassVar[Mapping[str, int]] = {"firmware": 9}

    def rank(protocol: str, field: str) -> int:
        return Gateway.rank(field) if protocol == "modbus" else source_rank(protocol, field)

    merged = merge(SEEN, rank)
    assert merged is not None
    assert (merged.get("firmware"), merged.sources["firmware"]) == ("v3.2.7", "modbus")
    assert (merged.get("model"), merged.sources["model"]) == ("CPU 315-2 PN/DP", "s7")
    assert merged.get("vendor") == "Siemens" and merged.conflicts["vendor"] == {"s7": "Siemens", "modbus": "Siemens AG"}
