"""Every demo-plant device read back with independent clients (python-snap7, pycomm3), compared with the YAML.

The Modbus devices of the demo plant are read back with the pymodbus client in test_sim_modbus.py; this file does
the same for the S7 and EtherNet/IP devices, so the whole plant file is proven to be what clients see.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from cli_helpers import DEMO, moved_demo, shifted
from conftest import plant_in_thread
from pycomm3 import CIPDriver
from snap7.async_client import AsyncClient

SHIFT = 140  # the demo plant moved to 127.0.141-149.x, ports unchanged (pycomm3's list_identity needs 44818)
PLANT = yaml.safe_load(DEMO.read_text())  # what the clients must read back
S7 = [d for d in PLANT["devices"] if "s7" in d]
ENIP = [d for d in PLANT["devices"] if "enip" in d]


def _int(value: object) -> int:
    return int(str(value), 0)


@pytest.fixture(scope="module")
def demo_plant():
    """The demo plant on its own event loop thread, so synchronous pycomm3 calls can run against it."""
    with plant_in_thread(moved_demo(SHIFT)[0]) as plant:
        yield plant


@pytest.mark.parametrize("device", S7, ids=[d["name"] for d in S7])
def test_s7_identity_with_python_snap7(demo_plant, device):
    expected = device["s7"]

    async def read():
        client = AsyncClient()
        client.set_connection_type(3)  # S7-basic, as otprobe connects
        try:
            await asyncio.wait_for(client.connect(shifted(device["address"], SHIFT), expected.get("rack", 0),
                                                  expected.get("slot", 2), tcp_port=PLANT["ports"]["s7"]), 5)
            code = await client.get_order_code()
            info = None if expected.get("mode") == "s1200" else await client.get_cpu_info()
            return code, info
        finally:
            await client.disconnect()

    code, info = asyncio.run(read())
    assert code.OrderCode.decode().strip() == expected["order_code"].strip()
    assert f"V{code.V1}.{code.V2}.{code.V3}" == expected["firmware"]
    if info is not None:
        assert info.ModuleTypeName.decode().rstrip("\0 ") == expected["module_type_name"]
        assert info.SerialNumber.decode().rstrip("\0 ") == expected.get("serial", "")
        assert info.ASName.decode().rstrip("\0 ") == expected.get("as_name", "")
        assert info.ModuleName.decode().rstrip("\0 ") == expected.get("module_name", "")


@pytest.mark.parametrize("device", ENIP, ids=[d["name"] for d in ENIP])
def test_enip_identity_with_pycomm3(demo_plant, device):
    expected = device["enip"]
    assert expected.get("port", PLANT["ports"]["enip"]) == 44818  # pycomm3's list_identity has no port argument
    found = CIPDriver.list_identity(shifted(device["address"], SHIFT))
    assert found is not None
    assert found["product_name"] == expected["product_name"]
    assert found["product_code"] == _int(expected["product_code"])
    assert found["serial"] == f"{_int(expected['serial']):08x}"
    assert f"{found['revision']['major']}.{found['revision']['minor']}" == str(expected["revision"])
    assert found["ip_address"] == shifted(device["address"], SHIFT)  # the device's own address, big-endian
