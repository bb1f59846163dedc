"""The simulated SNMP agent, spoken to with golden BER datagrams and with pysnmp's own command generator.

Each test runs its own agents on 127.0.141.1xx (this file's addresses; a free port). Raw requests and the replies
they must get are written out byte by byte from the BER layout; pysnmp's high-level client (its whole engine, USM
discovery included, none of the simulator's code) checks that a real manager reads the configured identity. nmap's
snmp-sysdescr and snmp-info are a cross-check when installed (they need port 161).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from typing import Any

import identities
import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
    set_cmd,
)
from pysnmp.proto.rfc1902 import OctetString
from pysnmp.proto.rfc1905 import EndOfMibView

from simulators.plant import PlantError, load_plant

HOST = "127.0.141.100"
CLIENT = "127.0.141.1"
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", \
    "1.3.6.1.2.1.1.5.0"
ENTITY = "1.3.6.1.2.1.47.1.1.1.1"
RS20 = identities.SNMP_RS20
# golden requests: v2c GetRequest sysDescr.0 (request id 1, community public), GetBulk of entPhysicalModelName
GET_SYS_DESCR = bytes.fromhex("3026 020101 0406 7075626c6963 a019 020101 020100 020100 300e 300c"
                              "0608 2b06010201010100 0500")
GET_BULK_MODEL = bytes.fromhex("3029 020101 0406 7075626c6963 a51c 020103 020100 02010a 3011 300f"
                               "060b 2b060102012f010101010d 0500")
# nmap snmp-info's fixed SNMPv3 discovery probe (msgID 0x4a69, reportable, no engine id, no user)
V3_DISCOVERY = bytes.fromhex("303a020103300f02024a69020300ffe30401040201030410300e0400020100020100040004000400"
                             "301204000400a00c020237f00201000201003000")


def tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 128  # short form: enough for these replies
    return bytes([tag, len(content)]) + content


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | arc & 0x7F)
        body += bytes(chunk)
    return tlv(0x06, body)


def get_request(dotted: str, version: int = 1, community: bytes = b"public") -> bytes:
    """A GetRequest (request id 1) of one object, written out from the BER layout."""
    pdu = tlv(0xA0, tlv(0x02, b"\x01") + tlv(0x02, b"\x00") + tlv(0x02, b"\x00")
              + tlv(0x30, tlv(0x30, oid(dotted) + b"\x05\x00")))
    return tlv(0x30, tlv(0x02, bytes([version])) + tlv(0x04, community) + pdu)


def agent(address: str = HOST, fault: Any = None, **options: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": f"switch-{address.rsplit('.', 1)[1]}", "address": address, "class": "switch",
                            "snmp": {**RS20, "port": 0, **options}}
    if fault is not None:
        spec["fault"] = fault
    return spec


async def exchange(data: bytes, port: int, host: str = HOST, timeout: float = 1.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((CLIENT, 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, data, (host, port))
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 70_000), timeout)
        except TimeoutError:
            return None


async def target(port: int, host: str = HOST) -> UdpTransportTarget:
    return await UdpTransportTarget.create((host, port), timeout=1, retries=0)


def values(varbinds: Any) -> dict[str, str]:
    return {str(name): value.prettyPrint() for name, value in varbinds}


# -- v1 / v2c ---------------------------------------------------------------------------------------------------------


async def test_v2c_get_sys_descr_golden_bytes(start_plant: Any) -> None:
    plant = await start_plant(agent())
    reply = await exchange(GET_SYS_DESCR, plant[agent()["name"]].ports["snmp"])
    varbind = tlv(0x30, oid(SYS_DESCR) + tlv(0x04, b"Hirschmann Railswitch"))
    pdu = tlv(0xA2, tlv(0x02, b"\x01") + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, varbind))
    assert reply == tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"public") + pdu)
    recorder = plant[agent()["name"]].recorder
    assert [(r.operation, r.allowed, r.connection, r.size) for r in recorder.requests] == [
        ("v2c:get", True, None, len(GET_SYS_DESCR))]
    assert recorder.packet_count() == 1


async def test_v2c_get_bulk_golden_bytes_walk_the_model_names(start_plant: Any) -> None:
    plant = await start_plant(agent())
    reply = await exchange(GET_BULK_MODEL, plant[agent()["name"]].ports["snmp"])
    assert reply is not None
    model = f"{ENTITY}.13"
    varbinds = (tlv(0x30, oid(f"{model}.1") + tlv(0x04, b"RS20-0800T1T1SDAUHC"))
                + tlv(0x30, oid(f"{model}.2") + tlv(0x04, b"RS20-CPU"))
                + tlv(0x30, oid(f"{model}.2") + b"\x82\x00"))  # past the last object: endOfMibView, then it stops
    pdu = tlv(0xA2, tlv(0x02, b"\x03") + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, varbinds))
    assert reply == tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"public") + pdu)


async def test_pysnmp_manager_reads_system_group_and_entity_table(start_plant: Any) -> None:
    plant = await start_plant(agent())
    port = plant[agent()["name"]].ports["snmp"]
    engine = SnmpEngine()
    error, status, _, varbinds = await get_cmd(
        engine, CommunityData("area"), await target(port), ContextData(),
        *(ObjectType(ObjectIdentity(o)) for o in (SYS_DESCR, SYS_OBJECT_ID, SYS_NAME, SYS_UPTIME)), lookupMib=False)
    assert error is None and int(status) == 0
    got = values(varbinds)
    assert got[SYS_DESCR] == "Hirschmann Railswitch" and got[SYS_NAME] == "rs20-hall-a"
    assert got[SYS_OBJECT_ID] == "1.3.6.1.4.1.248.14"
    assert 0 <= int(got[SYS_UPTIME]) < 6000
    # walk the physical table column by column with GetNext, then the same with GetBulk
    walked: dict[str, str] = {}
    cursor = ENTITY
    for _ in range(100):
        error, status, _, varbinds = await next_cmd(engine, CommunityData("public"), await target(port),
                                                    ContextData(), ObjectType(ObjectIdentity(cursor)),
                                                    lookupMib=False)
        assert error is None and int(status) == 0
        (name, value), = varbinds
        if isinstance(value, EndOfMibView):  # the table is the last thing this agent carries
            break
        walked[str(name)[len(ENTITY) + 1:]] = value.prettyPrint()
        cursor = str(name)
    else:
        raise AssertionError("the walk never reached endOfMibView")
    assert walked["13.1"] == "RS20-0800T1T1SDAUHC" and walked["11.1"] == "943434001"
    assert walked["9.2"] == "09.0.08" and walked["10.2"] == "L2E-09.0.08" and walked["8.1"] == "1.07"
    assert walked["5.1"] == "3" and walked["5.2"] == "9" and walked["4.2"] == "1" and walked["4.1"] == "0"
    assert walked["12.1"] == walked["12.2"] == "Hirschmann" and walked["9.1"] == ""
    assert len(walked) == 2 * 11  # every column of RFC 6933 this agent carries, for both rows
    error, status, _, varbinds = await bulk_cmd(engine, CommunityData("public"), await target(port), ContextData(),
                                                0, 30, ObjectType(ObjectIdentity(ENTITY)), lookupMib=False)
    assert error is None and int(status) == 0
    bulk = {str(n)[len(ENTITY) + 1:]: v.prettyPrint() for n, v in varbinds if not isinstance(v, EndOfMibView)}
    assert bulk == walked
    recorder = plant[agent()["name"]].recorder
    assert recorder.violations() == []
    assert {r.operation for r in recorder.requests} == {"v2c:get", "v2c:getnext", "v2c:getbulk"}


async def test_wrong_community_is_silence(start_plant: Any) -> None:
    plant = await start_plant(agent())
    port = plant[agent()["name"]].ports["snmp"]
    assert await exchange(get_request(SYS_DESCR, community=b"private"), port, timeout=0.5) is None
    (recorded,) = plant[agent()["name"]].recorder.requests
    assert recorded.operation == "v2c:get" and recorded.detail["community_ok"] is False


async def test_set_is_a_violation_and_never_applied(start_plant: Any) -> None:
    plant = await start_plant(agent())
    port = plant[agent()["name"]].ports["snmp"]
    engine = SnmpEngine()
    error, status, index, _ = await set_cmd(engine, CommunityData("public"), await target(port), ContextData(),
                                            ObjectType(ObjectIdentity(SYS_NAME), OctetString("pwned")),
                                            lookupMib=False)
    assert error is None and status.prettyPrint() == "noAccess" and int(index) == 1
    error, status, _, varbinds = await get_cmd(engine, CommunityData("public"), await target(port), ContextData(),
                                               ObjectType(ObjectIdentity(SYS_NAME)), lookupMib=False)
    assert values(varbinds) == {SYS_NAME: "rs20-hall-a"}
    violations = plant[agent()["name"]].recorder.violations()
    assert [v.operation for v in violations] == ["v2c:set"]


async def test_missing_objects_v2c_exceptions_and_v1_no_such_name(start_plant: Any) -> None:
    plant = await start_plant(agent())
    port = plant[agent()["name"]].ports["snmp"]
    assert get_request(SYS_DESCR) == GET_SYS_DESCR  # the helper builds the golden request
    sys_services = "1.3.6.1.2.1.1.7.0"  # an object type this agent does not carry: noSuchObject
    absent_row = f"{ENTITY}.13.7"  # the column exists, that row does not: noSuchInstance
    reply = await exchange(get_request(sys_services), port)
    assert reply is not None and reply.endswith(oid(sys_services) + b"\x80\x00")
    reply = await exchange(get_request(absent_row), port)
    assert reply is not None and reply.endswith(oid(absent_row) + b"\x81\x00")
    reply = await exchange(get_request(sys_services, version=0), port)
    assert reply is not None  # v1 has no exception values: error-status noSuchName, error-index 1, varbinds as sent
    assert reply.endswith(tlv(0x02, b"\x02") + tlv(0x02, b"\x01") + tlv(0x30, tlv(0x30, oid(sys_services)
                                                                                     + b"\x05\x00")))


# -- v3 ---------------------------------------------------------------------------------------------------------------


async def test_v3_discovery_golden_bytes_and_a_pysnmp_v3_read(start_plant: Any) -> None:
    plant = await start_plant(agent())
    port = plant[agent()["name"]].ports["snmp"]
    reply = await exchange(V3_DISCOVERY, port)
    assert reply is not None
    engine_id = bytes.fromhex(RS20["engine_id"])
    assert tlv(0x02, b"\x4a\x69") in reply  # the same msgID
    assert tlv(0x04, engine_id) in reply  # the engine id, in the USM parameters and the scoped PDU
    report = tlv(0x30, oid("1.3.6.1.6.3.15.1.1.4.0") + tlv(0x41, b"\x01"))  # usmStatsUnknownEngineIDs.0 = 1
    assert reply.endswith(tlv(0xA8, tlv(0x02, b"\x37\xf0") + tlv(0x02, b"\x00") + tlv(0x02, b"\x00")
                              + tlv(0x30, report)))
    error, status, _, varbinds = await get_cmd(SnmpEngine(), UsmUserData("otprobe"), await target(port),
                                               ContextData(), ObjectType(ObjectIdentity(SYS_DESCR)), lookupMib=False)
    assert error is None and int(status) == 0
    assert values(varbinds) == {SYS_DESCR: "Hirschmann Railswitch"}
    error, *_ = await get_cmd(SnmpEngine(), UsmUserData("intruder"), await target(port), ContextData(),
                              ObjectType(ObjectIdentity(SYS_DESCR)), lookupMib=False)
    assert error is not None and "nknown" in str(error)  # a Report of usmStatsUnknownUserNames
    requests = plant[agent()["name"]].recorder.requests
    assert [(r.operation, r.allowed) for r in requests] == [
        ("v3:discovery", True), ("v3:discovery", True), ("v3:get", True), ("v3:discovery", True), ("v3:get", True)]
    assert requests[-1].detail == {"user": "intruder", "report": "1.3.6.1.6.3.15.1.1.3.0"}


# -- fault modes ------------------------------------------------------------------------------------------------------


async def test_fault_modes_at_the_datagram(start_plant: Any) -> None:
    faults = {"silent": "127.0.141.110", "malformed": "127.0.141.111", "truncated": "127.0.141.112",
              "wrong_tid": "127.0.141.113", "oversized": "127.0.141.114"}
    slow = agent("127.0.141.115", fault={"mode": "slow", "latency_s": 0.3})
    plant = await start_plant(*(agent(address, fault=mode) for mode, address in faults.items()), slow)
    replies = {mode: await exchange(GET_SYS_DESCR, plant.by_address(address).ports["snmp"], host=address,
                                    timeout=0.5) for mode, address in faults.items()}
    good_length = 0x3D
    assert replies["silent"] is None
    malformed = replies["malformed"]
    assert malformed is not None and malformed[:2] == b"\x30\x3b" and set(malformed[2:]) == {0xFF}
    assert replies["truncated"] is not None and len(replies["truncated"]) == good_length // 2
    wrong = replies["wrong_tid"]  # the request id (after the PDU tag and length at 13-14) is another one
    assert wrong is not None and wrong[15:18] != b"\x02\x01\x01" and wrong.endswith(b"Hirschmann Railswitch")
    assert replies["oversized"] is not None and len(replies["oversized"]) > 60_000
    began = time.monotonic()
    reply = await exchange(GET_SYS_DESCR, plant[slow["name"]].ports["snmp"], host=slow["address"])
    assert time.monotonic() - began >= 0.3 and reply is not None and reply.endswith(b"Hirschmann Railswitch")
    for running in plant:
        assert [(r.operation, r.connection) for r in running.recorder.requests] == [("v2c:get", None)]


# -- plant sections ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "message"), [
    ({**RS20, "sys_object_id": "enterprises.248"}, "snmp.sys_object_id: 'enterprises.248' is not a dotted OID"),
    ({**RS20, "communities": "public"}, "snmp.communities: must be a list of non-empty strings"),
    ({**RS20, "engine_id": "zz"}, "snmp.engine_id: 'zz' is not hex"),
    ({**RS20, "entities": [{"index": 1, "class": "rack"}]}, "snmp.entities[0].class: 'rack' is not one of"),
    ({**RS20, "entities": [{"index": 1}, {"index": 1}]}, "snmp.entities[1].index: required, an entPhysicalIndex"),
    ({**RS20, "entities": [{"index": 1, "colour": "red"}]}, "snmp.entities[0].colour: unknown key"),
    ({k: v for k, v in RS20.items() if k != "sys_descr"}, "snmp.sys_descr: required"),
])
def test_bad_snmp_section_names_file_and_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(PlantError) as excinfo:
        load_plant({"plant": "bad", "devices": [{"name": "a", "address": HOST, "class": "switch", "snmp": section}]})
    assert str(excinfo.value).startswith(f"<plant bad>: devices[0].{message}")


# -- outside clients --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_snmp_scripts_read_the_agent(start_plant: Any) -> None:
    try:
        plant = await start_plant(agent("127.0.141.130", port=161))
    except PlantError as exc:  # port 161 needs root or CAP_NET_BIND_SERVICE
        pytest.skip(f"cannot bind port 161: {exc}")
    process = await asyncio.create_subprocess_exec(
        "nmap", "-n", "-Pn", "-sU", "-p", "161", "--script", "snmp-sysdescr,snmp-info", "127.0.141.130",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if process.returncode != 0 and b"root" in err:
        pytest.skip("nmap -sU needs root here")
    text = out.decode()
    assert "snmp-sysdescr: Hirschmann Railswitch" in text, text
    assert "enterprise: Richard Hirschmann GmbH & Co." in text and "engineIDData: ec74bafe1c20" in text, text
    operations = {r.operation for r in plant[agent("127.0.141.130")["name"]].recorder.requests}
    assert {"v3:discovery", "v1:get"} <= operations
    assert plant[agent("127.0.141.130")["name"]].recorder.violations() == []
