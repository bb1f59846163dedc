"""Asset types from each protocol's own identity fields: the tables on real identities, and every probe against the
demo plant's simulated devices, where each answer is judged by what the device itself said.

The demo plant runs moved to 127.0.171-179.x (this file's range). Every target is given the pacing class
"unknown", so a type can only come from the device's reply, never from the class its address would get.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from otprobe.contract import Timeouts
from otprobe.link import Link
from otprobe.model import ASSET_TYPES, Status, Target
from otprobe.probes import asset_type, probe_class
from simulators.plant import relocate

DEMO = Path(__file__).resolve().parents[2] / "simulators" / "plants" / "demo.yaml"
SHIFT = 170
TIMEOUTS = Timeouts(connect_s=1.0, response_s=2.0)  # boiler-gw answers after 0.4 s (fault: slow)


def test_every_table_row_is_in_the_vocabulary() -> None:
    tables = asset_type.tables()
    found = {*tables.cip_device_types.values(), *tables.cip_vendor_types.values(),
             *(kind for _, kind in tables.s7_order_codes), *(row.type for row in tables.products),
             *(kind for _, kind in tables.snmp_object_ids)}
    assert found <= set(ASSET_TYPES)
    assert len(found) >= 10


def test_every_named_source_is_one_the_table_cites() -> None:
    text = (Path(asset_type.__file__).parents[1] / "data" / "asset_types.yaml").read_text()
    data = yaml.safe_load(text)
    named = {row["source"] for section in ("cip_vendor_types", "s7_order_codes", "products", "snmp_object_ids")
             for row in data[section] if "source" in row}
    assert named and all(f"#   [{key}]" in text for key in named), named


def test_a_type_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="'firewall' is not one of plc, safety_plc"):
        asset_type._type("firewall", "products")


# -- the tables on real identities (docs/protocols.md, "Asset type") -------------------------------------------

@pytest.mark.parametrize(("vendor_id", "device_type", "vendor", "name", "expected"), [
    (1, 12, "Rockwell Automation/Allen-Bradley", "1756-ENBT/A", "io_adapter"),
    (1, 14, "Rockwell Automation/Allen-Bradley", "1756-L61/B LOGIX5561", "plc"),
    (1, 14, "Rockwell Automation/Allen-Bradley", "1766-L32BXBA A/7.00", "plc"),
    (1, 14, "Rockwell Automation/Allen-Bradley", "1756-L73S/B LOGIX5573S", "safety_plc"),
    (1, 14, "Rockwell Automation/Allen-Bradley", "1769-L33ERMS/A", "safety_plc"),
    (1, 14, "Rockwell Automation/Allen-Bradley", "1769-L18ER/A LOGIX5318ER", "plc"),
    (1, 123, "Rockwell Automation/Allen-Bradley", "PowerFlex 753", "drive"),
    (1, 2, "Rockwell Automation/Allen-Bradley", "PowerFlex 525", "drive"),
    (309, 12, "ProSoft Technology", "MVI56 ProSoft Technology, Inc.", "gateway"),
    (1, 24, "Rockwell Automation/Allen-Bradley", "2711P-T7C22D9P PanelView Plus 7", "hmi"),
    (1, 0x2C, "Rockwell Automation/Allen-Bradley", "1783-BMS10CGL", "switch"),
    (243, 0x2B, "Schneider Electric", "BMX ERT", None),  # generic keyable: says nothing
    (47, 123, "Omron", "NX1P2", None),  # 123 is vendor-specific: Rockwell's meaning is not Omron's
])
def test_enip_device_type(vendor_id: int, device_type: int, vendor: str, name: str, expected: str | None) -> None:
    assert asset_type.cip(vendor_id, device_type, vendor, name) == expected


@pytest.mark.parametrize(("order_code", "model", "expected"), [
    ("6ES7 315-2EH14-0AB0", "CPU 315-2 PN/DP", "plc"),
    ("6ES7 317-2FK14-0AB0", "CPU 317F-2 PN/DP", "safety_plc"),
    ("6ES7 516-3FN02-0AB0", "CPU 1516F-3 PN/DP", "safety_plc"),
    ("6ES7 516-3AN02-0AB0", "CPU 1516-3 PN/DP", "plc"),
    ("6ES7 512-1CK01-0AB0", "CPU 1512C-1 PN", "plc"),
    ("6ES7 212-1BE40-0XB0", "CPU 1212C AC/DC/Rly", "plc"),
    ("6ES7 214-1AF40-0XB0", "CPU 1214FC DC/DC/DC", "safety_plc"),
    ("6ES7 515-2UM01-0AB0", "CPU 1515TF-2 PN", "safety_plc"),  # the type name settles it
    ("6ES7 151-8AB01-0AB0", "IM151-8 PN/DP CPU", "plc"),
    ("6ES7 151-8FB01-0AB0", "IM151-8F PN/DP CPU", "safety_plc"),
    ("6ES7 155-6AU01-0BN0", None, "io_adapter"),
    ("6ES7  315-2EH14-0AB0", None, "plc"),  # blanks as a device pads them
    ("6GK7 343-1EX30-0XE0", "CP 343-1", "gateway"),
    ("6AV2 124-0GC01-0AX0", "TP700 Comfort", "hmi"),
    ("6SL3 244-0BB12-1FA0", None, "drive"),
    ("6ES7 321-1BL00-0AA0", None, None),  # a signal module is not a CPU: no row, no guess
    (None, None, None),
])
def test_s7_order_code(order_code: str | None, model: str | None, expected: str | None) -> None:
    assert asset_type.s7(order_code, model) == expected


@pytest.mark.parametrize(("vendor", "texts", "expected"), [
    ("Schneider Electric", ("BMX P34 2020", "Modicon M340"), "plc"),
    ("Schneider Electric", ("BMX NOE 0100",), "gateway"),
    ("Schneider Electric", ("PM710",), "meter"),
    (None, ("PM710PowerMeter",), "meter"),  # FC17: no vendor, the model text names the product
    ("KBR", ("multicomp F144-3",), "meter"),
    ("Moxa", ("MGate MB3180", "Modbus Gateway"), "gateway"),
    ("ABB", ("560CMU05",), "rtu"),
    ("Acme", ("Widget 3000",), None),
    (None, (None, ""), None),
])
def test_modbus_product_table(vendor: str | None, texts: tuple[str | None, ...], expected: str | None) -> None:
    assert asset_type.modbus(vendor, *texts) == expected


@pytest.mark.parametrize(("vendor", "model", "expected"), [
    ("Siemens Building Technologies", "Siemens BACnet Field Panel", "building_controller"),
    ("TAC", "bCX1-CR", "building_controller"),
    ("ABB", "ACH580", "drive"),
    ("Danfoss", "VLT HVAC Drive FC 102", "drive"),
    (None, None, "building_controller"),  # a Device object answered: BACnet devices are building automation
])
def test_bacnet_device_object(vendor: str | None, model: str | None, expected: str) -> None:
    assert asset_type.bacnet(vendor, model) == expected


@pytest.mark.parametrize(("vendor", "texts", "oid", "services", "classes", "expected"), [
    ("Hirschmann", ("RS20-0800T1T1SDAUHC", "Hirschmann Railswitch"), (1, 3, 6, 1, 4, 1, 248, 14), None,
     ["chassis"], "switch"),
    ("Hirschmann", (None, "Hirschmann EAGLE Security Device"), None, None, [], "router"),
    ("Siemens", (None, "Siemens, SIMATIC NET, SCALANCE M876-4 EU, 6GK5 876-4AA00-2BA2"), None, None, [], "router"),
    ("Moxa", (None, None), (1, 3, 6, 1, 4, 1, 8691, 7, 116), None, [], "switch"),
    (None, (None, "UPS agent"), (1, 3, 6, 1, 2, 1, 33), 72, [], "ups"),
    (None, (None, "Linux gw 5.10"), (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10), 78, [], "router"),  # layer 3 served
    (None, (None, "L2 switch"), (1, 3, 6, 1, 4, 1, 99999), 2, [], "switch"),
    (None, (None, "Linux host"), (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10), 72, [], None),  # host: layers 4 and 7
    (None, (None, None), None, None, ["stack", "chassis"], "switch"),
    (None, (None, None), None, None, ["chassis", "module"], None),
])
def test_snmp_fields(vendor: str | None, texts: tuple[str | None, ...], oid: tuple[int, ...] | None,
                     services: int | None, classes: list[str], expected: str | None) -> None:
    assert asset_type.snmp(vendor, texts, oid, services, classes) == expected


@pytest.mark.parametrize(("application_type", "texts", "expected"), [
    (0, ("SIMATIC.S7-1500.OPC-UA.Application:PLC_4", "urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_4"), "plc"),
    (0, ("TwinCAT OPC UA Server", "urn:BeckhoffAutomation:Ua:PLC1"), "plc"),
    (0, ("KEPServerEX/UA Server", "urn:host:Kepware.KEPServerEX.V6"), "server"),
    (3, ("UA Local Discovery Server", "urn:host:UA:LDS"), "server"),
    (1, ("UaExpert", "urn:host:UnifiedAutomation:UaExpert"), None),  # a client says nothing of a device
])
def test_opcua_application(application_type: int, texts: tuple[str, ...], expected: str | None) -> None:
    assert asset_type.opcua(application_type, None, *texts) == expected


# -- every probe against the demo plant, judged at the simulated device's reply ---------------------------------

DEMO_TYPES = [
    ("line1-cpu315", "s7", "plc"),
    ("line1-cpu1212c", "s7", "plc"),
    ("line2-cpu1516f", "s7", "safety_plc"),
    ("line2-im151", "s7", "plc"),
    ("line3-cpu317f", "s7", "safety_plc"),
    ("line3-cpu1515", "s7", "plc"),
    ("line3-cpu1515", "opcua", "plc"),  # the S7-1500's built-in server is the PLC
    ("mcc-m340", "modbus", "plc"),
    ("utility-m580", "modbus", "plc"),
    ("utility-m580", "enip", "plc"),
    ("feeder-pm710", "modbus", "meter"),
    ("panel-kbr", "modbus", "meter"),
    ("boiler-gw", "modbus", "gateway"),
    ("pack-l18er", "enip", "plc"),
    ("pack-en2t", "enip", "io_adapter"),
    ("conveyor-pf753", "enip", "drive"),
    ("pack-mvi56", "enip", "gateway"),
    ("wrap-micro820", "enip", "plc"),
    ("hmi-panelview", "enip", "hmi"),
    ("safety-guardlogix", "enip", "safety_plc"),
    ("hvac-pxc", "bacnet", "building_controller"),
    ("net-rs20", "snmp", "switch"),
]
OPTIONS: dict[str, dict[str, Any]] = {"bacnet": {"source_port": 0}, "snmp": {"communities": ["public"]}}


async def test_every_probe_types_the_demo_plant(start_plant: Any) -> None:
    plant = await start_plant(source=relocate(DEMO, third_octet_shift=SHIFT))
    found = {}
    for name, protocol, _ in DEMO_TYPES:
        device = plant[name]
        probe = probe_class(protocol)({"port": device.ports[protocol], **OPTIONS.get(protocol, {})})
        target = Target(device.spec.address, "unknown")
        observation = await probe.run(Link(probe, target, timeouts=TIMEOUTS), target)
        assert observation.status is Status.IDENTIFIED, (name, protocol, observation.error)
        assert observation.identity is not None
        found[name, protocol] = observation.identity.asset_type
    assert found == {(name, protocol): expected for name, protocol, expected in DEMO_TYPES}
    assert {expected for *_, expected in DEMO_TYPES} >= {"drive", "meter", "io_adapter", "gateway", "switch"}
