"""What kind of device an identity describes (otprobe.model.ASSET_TYPES), from the protocol's own fields only.

Owns the reading of otprobe/data/asset_types.yaml and one function per protocol family; each probe calls its own
with what the device said. Every function returns None when the data does not say: the address and the pacing
class are never an input, so a wrong `assign` in a profile cannot turn into a wrong asset type.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from otprobe.model import ASSET_TYPES

# SNMPv2-MIB sysServices bits (RFC 3418): layer L is bit 2^(L-1)
_LAYER_2, _LAYER_3 = 0x02, 0x04
# OPC UA ApplicationType (OPC 10000-4 7.2): Server 0, Client 1, ClientAndServer 2, DiscoveryServer 3
_OPCUA_SERVERS = (0, 2, 3)


@dataclass(frozen=True)
class _Product:
    vendor: re.Pattern[str] | None
    product: re.Pattern[str]
    type: str
    protocols: frozenset[str]

    def matches(self, protocol: str, vendor: str | None, texts: Iterable[str]) -> bool:
        if self.protocols and protocol not in self.protocols:
            return False
        if self.vendor is not None and not (vendor and self.vendor.search(vendor)):
            return False
        return any(self.product.search(text) for text in texts)


@dataclass(frozen=True)
class _Tables:
    cip_device_types: dict[int, str]
    cip_vendor_types: dict[tuple[int, int], str]
    s7_order_codes: tuple[tuple[re.Pattern[str], str], ...]
    products: tuple[_Product, ...]
    snmp_object_ids: tuple[tuple[tuple[int, ...], str], ...]


def _type(value: Any, where: str) -> str:
    if value not in ASSET_TYPES:
        raise ValueError(f"otprobe/data/asset_types.yaml {where}: {value!r} is not one of {', '.join(ASSET_TYPES)}")
    return str(value)


@functools.cache
def tables() -> _Tables:
    """The shipped tables, checked once: a type outside the vocabulary or a bad pattern fails loudly."""
    text = resources.files("otprobe").joinpath("data", "asset_types.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    oids = [(tuple(int(arc) for arc in str(row["prefix"]).split(".")), _type(row["type"], f"prefix {row['prefix']}"))
            for row in data["snmp_object_ids"]]
    return _Tables(
        cip_device_types={int(k): _type(v, f"cip type {k}") for k, v in data["cip_device_types"].items()},
        cip_vendor_types={(int(r["vendor_id"]), int(r["device_type"])): _type(r["type"], "cip_vendor_types")
                          for r in data["cip_vendor_types"]},
        s7_order_codes=tuple((re.compile(r["pattern"]), _type(r["type"], r["pattern"]))
                             for r in data["s7_order_codes"]),
        products=tuple(
            _Product(re.compile(r["vendor"], re.I) if r.get("vendor") else None, re.compile(r["product"], re.I),
                     _type(r["type"], r["product"]), frozenset(r.get("protocols", ())))
            for r in data["products"]
        ),
        # longest prefix first, so that a product arc wins over its enterprise
        snmp_object_ids=tuple(sorted(oids, key=lambda row: -len(row[0]))),
    )


def from_products(protocol: str, vendor: str | None, *texts: str | None) -> str | None:
    """The first product row for this protocol whose maker matches `vendor` and whose product pattern is found in
    one of `texts` (model, product name, product code, ...)."""
    present = [text.strip() for text in texts if text and text.strip()]
    if not present:
        return None
    return next((row.type for row in tables().products if row.matches(protocol, vendor, present)), None)


def cip(vendor_id: int, device_type: int, vendor: str | None, product_name: str | None) -> str | None:
    """EtherNet/IP: a known product line first (it can be finer than the CIP class), then the vendor's own device
    type, then the CIP device profile."""
    known = tables()
    return (from_products("enip", vendor, product_name) or known.cip_vendor_types.get((vendor_id, device_type))
            or known.cip_device_types.get(device_type))


# A fail-safe CPU says so in its type name: "CPU 317F-2 PN/DP", "CPU 1516F-3 PN/DP", "CPU 1214FC", "CPU 1515TF-2",
# "IM151-8F PN/DP CPU"
_FAIL_SAFE_NAME = re.compile(r"\bCPU\s*\d{3,4}[A-Z]*F|\bIM\s?151-[78]F\b")


def s7(order_code: str | None, model: str | None) -> str | None:
    """S7: the order code's product group; a CPU naming itself fail-safe is a safety_plc whatever its order code."""
    code = " ".join(order_code.split()) if order_code else ""
    found = next((kind for pattern, kind in tables().s7_order_codes if pattern.search(code)), None)
    if found == "plc" and model and _FAIL_SAFE_NAME.search(model):
        return "safety_plc"
    return found


def modbus(vendor: str | None, *texts: str | None) -> str | None:
    """Modbus: FC43 and FC17 carry no device class; only a known product line says what the device is."""
    return from_products("modbus", vendor, *texts)


def bacnet(vendor: str | None, model: str | None) -> str:
    """BACnet: a Device object is a building controller unless its maker and model name another product line (a
    drive or a meter with a BACnet interface)."""
    return from_products("bacnet", vendor, model) or "building_controller"


def snmp(vendor: str | None, texts: Iterable[str | None], object_id: tuple[int, ...] | None, services: int | None,
         entity_classes: Iterable[str]) -> str | None:
    """SNMP: a known product (model or sysDescr), then a known sysObjectID arc, then the layers sysServices
    declares (3: router, else 2: switch), then an ENTITY-MIB stack (stackable switches); a host-only agent
    (layers 4 and 7) says nothing of its kind."""
    found = from_products("snmp", vendor, *texts)
    if found is None and object_id:
        found = next((kind for prefix, kind in tables().snmp_object_ids if object_id[: len(prefix)] == prefix), None)
    if found is None and services is not None and 0 <= services <= 127:
        found = "router" if services & _LAYER_3 else "switch" if services & _LAYER_2 else None
    if found is None and "stack" in entity_classes:
        found = "switch"
    return found


def opcua(application_type: int, vendor: str | None, *texts: str | None) -> str | None:
    """OPC UA: a server is a `server` unless its product data names a controller or HMI running it (an S7-1500's
    built-in server is the PLC); a client-only application says nothing."""
    if application_type not in _OPCUA_SERVERS:
        return None
    return from_products("opcua", vendor, *texts) or "server"
