"""The SNMP identity probe: request bytes, key localisation, hardened parsers (golden and Hypothesis), options and
secrets, policy, and runs against the simulated agent (simulators.snmp_sim) judged at its recorder.

Every agent runs on its own address in 127.0.151.0/24 (this file's range) on a free port; the nmap cross-check uses
port 161 on 127.0.151.161.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import socket
import stat
from pathlib import Path
from typing import Any

import identities
import pytest
import yaml
from cli_helpers import plain_env, run_otprobe, write_profile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pyasn1.type import univ
from pydantic import ValidationError
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from otprobe.contract import Operation, Timeouts
from otprobe.errors import PolicyViolation, ProtocolError
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes import snmp_wire as wire
from otprobe.probes.snmp import SnmpOptions, SnmpProbe, fingerprint
from otprobe.safety import is_read_only
from simulators.recorder import Recorder

TIMEOUTS = Timeouts(connect_s=0.5, response_s=0.5)
_hosts = (f"127.0.151.{n}" for n in itertools.count(10))

RS20 = identities.SNMP_RS20
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
MODEL_NAME = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1, 13)
# Written out from the BER layout (RFC 3416 PDUs in an RFC 1901 message): v2c GetRequest sysDescr.0, request id 1,
# community "public"; and GetBulk of entPhysicalModelName, request id 3, non-repeaters 0, max-repetitions 10.
GET_SYS_DESCR = bytes.fromhex("3026 020101 0406 7075626c6963 a019 020101 020100 020100 300e 300c"
                              "0608 2b06010201010100 0500")
GET_BULK_MODEL = bytes.fromhex("3029 020101 0406 7075626c6963 a51c 020103 020100 02010a 3011 300f"
                               "060b 2b060102012f010101010d 0500")


def tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 128
    return bytes([tag, len(content)]) + content


def v2c_response(request_id: int, varbinds: bytes, community: bytes = b"public", version: int = 1) -> bytes:
    pdu = tlv(0xA2, tlv(0x02, bytes([request_id])) + tlv(0x02, b"\x00") + tlv(0x02, b"\x00") + tlv(0x30, varbinds))
    return tlv(0x30, tlv(0x02, bytes([version])) + tlv(0x04, community) + pdu)


SYS_DESCR_VARBIND = tlv(0x30, bytes.fromhex("06082b06010201010100") + tlv(0x04, b"Hirschmann Railswitch"))
SYS_DESCR_REPLY = v2c_response(1, SYS_DESCR_VARBIND)


# -- requests and keys ------------------------------------------------------------------------------------------------

def test_v2c_requests_are_the_ber_layout() -> None:
    assert wire.v2c_request("get", b"public", 1, [SYS_DESCR]) == GET_SYS_DESCR
    assert wire.v2c_request("getbulk", b"public", 3, [MODEL_NAME], 10) == GET_BULK_MODEL


def test_v3_discovery_is_reportable_with_no_engine_user_or_varbind() -> None:
    message, rest = decoder.decode(wire.v3_request("get", 0x4A69, 7, []), asn1Spec=SNMPv3Message())
    assert rest == b""
    assert bytes(message["msgGlobalData"]["msgFlags"]) == b"\x04"  # reportable, noAuthNoPriv
    usm, _ = decoder.decode(bytes(message["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    assert bytes(usm["msgAuthoritativeEngineId"]) == bytes(usm["msgUserName"]) == b""
    pdu = message["msgData"]["plaintext"]["data"].getComponent()
    assert int(pdu["request-id"]) == 7 and len(pdu["variable-bindings"]) == 0


@pytest.mark.parametrize(("protocol", "expected"), [("md5", "526f5eed9fcce26f8964c2930787d82b"),
                                                    ("sha", "6695febc9288e36282235fc7151f128497b38f3f")])
def test_key_localisation_matches_rfc_3414_a3(protocol: str, expected: str) -> None:
    engine_id = bytes.fromhex("000000000000000000000002")
    assert wire.localized_key(protocol, "maplesyrup", engine_id).key.hex() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "checker"), [("md5", hmacmd5.HmacMd5), ("sha", hmacsha.HmacSha)])
def test_authenticated_request_verifies_with_pysnmp_own_hmac(protocol: str, checker: Any) -> None:
    # an engine id holding twelve zero octets: the MAC goes where the USM field is, not where zeros first are
    engine = wire.Engine(bytes.fromhex("80000000") + bytes(12), 3, 12345)
    auth = wire.localized_key(protocol, "maplesyrup", engine.engine_id)  # type: ignore[arg-type]
    data = wire.v3_request("get", 9, 10, [SYS_DESCR], user=b"ops", engine=engine, auth=auth)
    message, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
    assert bytes(message["msgGlobalData"]["msgFlags"]) == b"\x05"  # reportable, authNoPriv
    usm, _ = decoder.decode(bytes(message["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    mac = usm["msgAuthenticationParameters"]
    assert len(mac) == 12 and bytes(mac) != bytes(12)
    checker().authenticate_incoming_message(univ.OctetString(auth.key), mac, data)  # raises when wrong
    assert int(usm["msgAuthoritativeEngineBoots"]) == 3 and int(usm["msgAuthoritativeEngineTime"]) == 12345


# -- parsers ----------------------------------------------------------------------------------------------------------

def test_v2c_reply_golden() -> None:
    reply = wire.parse_v2c_reply(SYS_DESCR_REPLY, b"public", 1, 1)
    assert reply.varbinds == ((SYS_DESCR, b"Hirschmann Railswitch"),) and reply.error_status == 0


@pytest.mark.parametrize(("data", "message"), [
    (v2c_response(2, SYS_DESCR_VARBIND), "another request"),
    (v2c_response(1, SYS_DESCR_VARBIND, community=b"other!"), "another community"),
    (v2c_response(1, SYS_DESCR_VARBIND, version=0), "version 0"),
    (v2c_response(1, b""), "0 varbinds for the 1 asked"),
    (SYS_DESCR_REPLY + b"\x00", "1 bytes after its end"),
    (SYS_DESCR_REPLY[:20], "not valid BER"),
    (GET_SYS_DESCR, "GetRequestPDU, not a Response"),
    (b"\x30" + b"\xff" * 40_000, "more than the 16384"),
])
def test_hostile_v2c_replies_are_protocol_errors_that_never_quote_the_reply(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as excinfo:
        wire.parse_v2c_reply(data, b"public", 1, 1)
    assert "public" not in str(excinfo.value)


def test_v3_reply_for_another_message_or_without_engine_is_refused() -> None:
    engine = wire.Engine(bytes.fromhex("800000f803ec74bafe1c20"), 1, 5)
    request = wire.v3_request("get", 11, 12, [], user=b"u", engine=engine)
    with pytest.raises(ProtocolError, match="GetRequestPDU"):  # a request is no reply
        wire.parse_v3_reply(request, 11, 12, 0)
    response = request.replace(b"\xa0", b"\xa2")  # the same message as a Response PDU
    assert wire.parse_v3_reply(response, 11, 12, 0)[1] == engine
    with pytest.raises(ProtocolError, match="msgID differs"):
        wire.parse_v3_reply(response, 99, 12, 0)
    with pytest.raises(ProtocolError, match="engine id of 0 octets"):
        wire.parse_v3_reply(wire.v3_request("get", 11, 12, []).replace(b"\xa0", b"\xa2"), 11, 12, 0)


def test_text_values_are_cut_at_nul_and_bounded() -> None:
    assert wire.text(b"RS20\x00\x00junk") == "RS20"
    assert wire.text(b"  ") is None and wire.text(5) is None and wire.text(wire.Missing.NO_SUCH_INSTANCE) is None
    with pytest.raises(ProtocolError, match="256 octets"):
        wire.text(b"x" * 256)


def _mutations() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, and real replies with bytes changed, cut or appended (they get past the outer BER)."""
    good = [SYS_DESCR_REPLY, v2c_response(1, SYS_DESCR_VARBIND * 2)]
    mutated = st.tuples(st.sampled_from(good), st.integers(0, 70), st.binary(min_size=1, max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):])
    return st.one_of(st.binary(max_size=300), mutated)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutations())
def test_v2c_parser_only_raises_protocol_error(data: bytes) -> None:
    try:
        reply = wire.parse_v2c_reply(data, b"public", 1, 1)
    except ProtocolError:
        return
    for _, value in reply.varbinds:
        with contextlib.suppress(ProtocolError):
            wire.text(value)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), st.tuples(st.integers(0, 80), st.binary(min_size=1, max_size=4)).map(
    lambda t: (lambda r: r[: t[0]] + t[1] + r[t[0] + len(t[1]):])(
        wire.v3_request("get", 11, 12, [SYS_DESCR], user=b"u",
                        engine=wire.Engine(b"\x80\x00\x00\xf8\x03\xec", 1, 5)).replace(b"\xa0", b"\xa2")))))
def test_v3_parser_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        wire.parse_v3_reply(data, 11, 12, 1)


# -- options, secrets, budget -----------------------------------------------------------------------------------------

def test_off_until_a_credential_is_named_and_never_enabled_without_one() -> None:
    assert SnmpOptions().enabled is False and SnmpProbe().max_packets() == 0
    assert SnmpOptions(communities=["public"]).enabled is True
    assert SnmpOptions.model_validate({"v3_users": [{"user": "ops"}]}).enabled is True
    assert SnmpOptions.model_validate({"communities": ["public"], "enabled": False}).enabled is False
    with pytest.raises(ValidationError, match="never guessed"):
        SnmpOptions(enabled=True)


def test_budget_counts_discovery_every_credential_and_the_bounded_walk() -> None:
    assert SnmpProbe({"communities": ["a"]}).max_packets() == 1 + 2  # get, ceil(8 / 4) GetBulk
    assert SnmpProbe({"communities": ["a", "b"], "v3_users": [{"user": "u"}]}).max_packets() == 1 + 1 + 2 + 2
    assert SnmpProbe({"communities": ["a"], "max_rows": 9}).max_packets() == 1 + 3
    assert SnmpProbe({"communities": ["a"], "walk": "getnext", "max_rows": 5}).max_packets() == 1 + 5
    assert all(is_read_only("snmp", op.code) for op in SnmpProbe.operations)


def test_secret_sources_env_and_owner_only_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTPROBE_TEST_COMMUNITY", "s3cret-env")
    secret_file = tmp_path / "community"
    secret_file.write_text("s3cret-file\n")
    secret_file.chmod(0o600)
    options = SnmpOptions(communities=["env:OTPROBE_TEST_COMMUNITY", f"file:{secret_file}", "literal"],
                          v3_users=[{"user": "ops", "auth_key": "env:OTPROBE_TEST_COMMUNITY"}])
    assert [c.get_secret_value() for c in options.communities] == ["s3cret-env", "s3cret-file", "literal"]
    dumped = json.dumps(options.model_dump(mode="json"))  # what `otprobe profiles show` prints
    assert "s3cret" not in dumped and "literal" not in dumped
    probe = SnmpProbe(options)
    assert [c.label for c in probe.credentials][-1] == f"v2c community {fingerprint('literal')}"
    assert "s3cret" not in repr(probe.credentials[0].user)
    secret_file.chmod(0o640)
    for spec, message in [(f"file:{secret_file}", "mode 0640: a secret file must be readable by its owner only"),
                          (f"file:{tmp_path / 'absent'}", "cannot be read"),
                          ("env:OTPROBE_TEST_UNSET", "OTPROBE_TEST_UNSET is not set")]:
        with pytest.raises(ValidationError, match=message) as excinfo:
            SnmpOptions(communities=[spec])
        assert "s3cret" not in str(excinfo.value)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o640


# -- policy -----------------------------------------------------------------------------------------------------------

async def test_a_declared_set_request_is_refused_before_any_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    for name in ("connect", "send", "sendto"):
        monkeypatch.setattr(socket.socket, name, lambda *a, _name=name: touched.append(_name))
    evil = type("EvilSnmp", (SnmpProbe,), {"operations": (*SnmpProbe.operations, Operation("set", "snmp:set"))})
    probe = evil({"communities": ["public"]})
    link = Link(probe, Target("127.0.151.9"))
    with pytest.raises(PolicyViolation, match="snmp:set"):
        async with link.op("set"):
            raise AssertionError("the send must not run")
    assert link.packets_sent == 0 and touched == []


# -- against the simulated agent --------------------------------------------------------------------------------------

async def agent(start_plant: Any, fault: Any = None, host: str | None = None,
                **section: Any) -> tuple[str, int, Recorder]:
    host = host or next(_hosts)
    device = {"name": "switch", "address": host, "class": "switch", "snmp": {**RS20, "port": 0, **section}}
    if fault is not None:
        device["fault"] = fault
    plant = await start_plant(device)
    running = plant["switch"]
    # a refused agent binds nothing (port 0): any port on its address then meets the kernel's ICMP refusal
    return host, running.ports.get("snmp", 0) or 161, running.recorder


async def probe(host: str, port: int, **options: Any) -> tuple[Observation, Link]:
    p = SnmpProbe({"port": port, **options})
    link = Link(p, Target(host, "switch"), timeouts=TIMEOUTS)
    return await p.run(link, Target(host, "switch")), link


def assert_rs20(obs: Observation) -> None:
    assert obs.status is Status.IDENTIFIED, obs.error
    ident = obs.identity
    assert ident is not None
    assert (ident.vendor, ident.model, ident.serial, ident.firmware, ident.hardware_version) == (
        "Hirschmann", "RS20-0800T1T1SDAUHC", "943434001", "09.0.08", "1.07")
    assert ident.product_name == "Hirschmann Railswitch" and ident.raw["sys_name"] == "rs20-hall-a"
    # the simulated agent has no sysServices (noSuchObject): the product line says what it is
    assert ident.raw["snmp_device_type"] == {"sys_object_id": "1.3.6.1.4.1.248.14", "enterprise": 248,
                                             "enterprise_name": "Hirschmann", "sys_services": None,
                                             "entity_classes": ["chassis", "module"]}
    assert ident.asset_type == "switch"
    chassis, module = ident.raw["entities"]
    assert (chassis["index"], chassis["class"], chassis["contained_in"]) == (1, "chassis", 0)
    assert (module["model_name"], module["software_rev"], module["contained_in"]) == ("RS20-CPU", "L2E-09.0.08", 1)
    assert 0 <= ident.raw["sys_uptime_s"] < 60


def assert_clean(obs: Observation, link: Link, recorder: Recorder) -> None:
    assert link.packets_sent == recorder.packet_count() == obs.packets_sent
    assert link.packets_sent <= link.budget
    assert recorder.violations() == []


async def test_v2c_identity_read_with_one_get_and_one_getbulk(start_plant: Any) -> None:
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, communities=["public"])
    assert_rs20(obs)
    assert recorder.operations() == ["v2c:get", "v2c:getbulk"]
    assert obs.identity is not None and obs.identity.raw["credential"] == f"v2c community {fingerprint('public')}"
    assert_clean(obs, link, recorder)


async def test_v3_user_first_discovery_counted(start_plant: Any) -> None:
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, v3_users=[{"user": "intruder"}, {"user": "otprobe"}], communities=["public"])
    assert_rs20(obs)
    assert recorder.operations() == ["v3:discovery", "v3:get", "v3:get", "v3:getbulk"]  # no community sent at all
    assert [r.detail.get("user") for r in recorder.requests] == ["", "intruder", "otprobe", "otprobe"]
    assert obs.identity is not None and obs.identity.raw["engine_id"] == RS20["engine_id"]
    assert obs.identity.raw["snmp_version"] == "v3"
    assert_clean(obs, link, recorder)


async def test_communities_tried_in_order_one_request_each_stop_at_the_first_answer(start_plant: Any) -> None:
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, communities=["wrong", "area", "public"])
    assert_rs20(obs)
    assert [(r.operation, r.detail["community_ok"]) for r in recorder.requests] == [
        ("v2c:get", False), ("v2c:get", True), ("v2c:getbulk", True)]
    assert obs.identity is not None and obs.identity.raw["credential"].endswith(fingerprint("area"))
    assert_clean(obs, link, recorder)


async def test_getnext_walk_and_the_row_bound(start_plant: Any) -> None:
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, communities=["public"], walk="getnext")
    assert_rs20(obs)
    assert recorder.operations() == ["v2c:get"] + ["v2c:getnext"] * 3  # two rows, then past the table
    assert_clean(obs, link, recorder)
    rows = [{"index": i, "class": "port", "contained_in": 1, "model_name": f"port {i}"} for i in range(3, 40)]
    host, port, recorder = await agent(start_plant, entities=[*RS20["entities"], *rows])
    obs, link = await probe(host, port, communities=["public"], max_rows=6)
    assert obs.status is Status.IDENTIFIED and obs.identity is not None
    assert obs.identity.raw["entity_rows_truncated"] is True
    assert [e["index"] for e in obs.identity.raw["entities"]] == [1, 2]  # chassis and module rows only
    assert recorder.operations() == ["v2c:get", "v2c:getbulk", "v2c:getbulk"]  # ceil(6 / 4)
    assert_clean(obs, link, recorder)


async def test_a_wrong_community_costs_one_request_and_no_retry(start_plant: Any) -> None:
    """The silence of a refused community is a timeout: the agent saw exactly the requests the link announced."""
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, communities=["wrong", "also-wrong"])
    assert obs.status is Status.TIMEOUT and obs.error and "2 request(s)" in obs.error
    await asyncio.sleep(0.3)  # a retrying library would have sent again by now
    assert recorder.operations() == ["v2c:get", "v2c:get"]
    assert_clean(obs, link, recorder)


async def test_unknown_users_are_no_identity(start_plant: Any) -> None:
    host, port, recorder = await agent(start_plant)
    obs, link = await probe(host, port, v3_users=[{"user": "intruder"}])
    assert obs.status is Status.NO_IDENTITY and "unknown user name" in (obs.error or "")
    assert recorder.operations() == ["v3:discovery", "v3:get"]
    assert_clean(obs, link, recorder)


@pytest.mark.parametrize(("fault", "status"), [
    ("silent", Status.TIMEOUT),
    ("refused", Status.REFUSED),
    ("malformed", Status.PROTOCOL_ERROR),
    ("truncated", Status.PROTOCOL_ERROR),
    ("oversized", Status.PROTOCOL_ERROR),
    ("wrong_tid", Status.PROTOCOL_ERROR),
    ({"mode": "slow", "latency_s": 1.0}, Status.TIMEOUT),
    ({"mode": "slow", "latency_s": 0.1}, Status.IDENTIFIED),
    ("reset", Status.IDENTIFIED),  # the connection-level modes have no datagram meaning
    ("conn_limit", Status.IDENTIFIED),
    ("stream", Status.IDENTIFIED),
])
@pytest.mark.parametrize("options", [{"communities": ["public"]}, {"v3_users": [{"user": "otprobe"}]}],
                         ids=["v2c", "v3"])
async def test_every_fault_mode_gives_a_status_never_a_traceback(
        start_plant: Any, fault: Any, status: Status, options: dict[str, Any]) -> None:
    host, port, recorder = await agent(start_plant, fault=fault)
    obs, link = await probe(host, port, **options)
    assert obs.status is status, obs.error
    assert "Traceback" not in (obs.error or "") and "public" not in (obs.error or "")
    assert (obs.identity is None) == (status is not Status.IDENTIFIED)
    await asyncio.sleep(0.05 if status is not Status.TIMEOUT else 0.6)  # late replies and would-be retries
    if fault != "refused":  # nothing listens on a refused port: no device records what reaches it
        assert_clean(obs, link, recorder)
    assert 0 < link.packets_sent <= link.budget


# -- a real scan through the CLI: the secret appears nowhere --------------------------------------------------------

async def test_a_cli_scan_never_shows_the_secrets(start_plant: Any, tmp_path: Path) -> None:
    host = "127.0.151.200"
    community, passphrase = "c0mmunity-Xq7", "pass-phrase-Zk9"
    secret_file = tmp_path / "community"
    secret_file.write_text(community + "\n")
    secret_file.chmod(0o600)
    _, port, recorder = await agent(start_plant, host=host, communities=[community])
    snmp = {"port": port, "communities": ["wrong-Yp3", f"file:{secret_file}"],
            "v3_users": [{"user": "nobody", "auth_key": "env:OTPROBE_TEST_KEY"}]}
    lab = yaml.safe_load((Path(__file__).parents[2] / "profiles" / "lab.yaml").read_text())
    profile = write_profile(tmp_path / "snmp.yaml", ["127.0.151.200/32"],
                            protocols={**lab["protocols"], "snmp": snmp})
    env = plain_env(tmp_path, OTPROBE_TEST_KEY=passphrase)
    db, audit = tmp_path / "inv.db", tmp_path / "audit.jsonl"
    scan = await run_otprobe("scan", host, "--profile", str(profile), "--protocol", "snmp", "--db", str(db),
                             "--audit", str(audit), "--format", "json", env=env)
    assert scan.code == 0, scan.stderr
    exported = await run_otprobe("inventory", "export", "--format", "json", "--db", str(db), env=env)
    shown = await run_otprobe("inventory", "show", host, "--format", "json", "--db", str(db), env=env)
    profile_shown = await run_otprobe("profiles", "show", str(profile), env=env)
    assert "Hirschmann Railswitch" in scan.stdout and "943434001" in exported.stdout, scan.stdout
    assert fingerprint(community) in scan.stdout + exported.stdout  # which credential answered, by its hash
    texts = [scan.stdout, scan.stderr, audit.read_text(), exported.stdout, exported.stderr, shown.stdout,
             shown.stderr, profile_shown.stdout, profile_shown.stderr, db.read_bytes().decode("latin-1")]
    for text in texts:
        assert community not in text and passphrase not in text and "wrong-Yp3" not in text
    # the agent saw every credential: discovery, the (authenticated) user, both communities, then the table
    assert [(r.operation, r.detail.get("community_ok")) for r in recorder.requests] == [
        ("v3:discovery", None), ("v3:get", None), ("v2c:get", False), ("v2c:get", True), ("v2c:getbulk", True)]
    assert recorder.requests[1].detail["user"] == "nobody"
    assert recorder.violations() == []


# -- nmap, an outside client, against the standard-port agent -------------------------------------------------------

@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed")
async def test_nmap_reads_what_the_probe_reads_on_port_161(start_plant: Any) -> None:
    standard = yaml.safe_load((Path(__file__).parents[2] / "simulators" / "plants" / "standard.yaml").read_text())
    (device,) = [d for d in standard["devices"] if "snmp" in d]
    host = "127.0.151.161"
    try:
        plant = await start_plant({**device, "address": host, "snmp": {**device["snmp"], "port": 161}})
    except Exception as exc:  # port 161 needs root or CAP_NET_BIND_SERVICE
        pytest.skip(f"cannot bind port 161: {exc}")
    obs, _ = await probe(host, 161, communities=["public"])
    assert obs.status is Status.IDENTIFIED and obs.identity is not None, obs.error
    process = await asyncio.create_subprocess_exec(
        "nmap", "-n", "-Pn", "-sU", "-p", "161", "--script", "snmp-sysdescr,snmp-info", host,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0 and b"root" in err:
        pytest.skip("nmap -sU needs root here")
    text = out.decode()
    assert f"snmp-sysdescr: {obs.identity.raw['sys_descr']}" in " ".join(text.split()), text
    assert "engineIDData" in text, text
    assert plant[device["name"]].recorder.violations() == []


# -- authNoPriv against an independent agent ---------------------------------------------------------------------------

async def bound(host: str, port: int) -> None:
    """Until the agent's socket is bound (its transport opens it from a task of its own)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_socket:
            try:
                probe_socket.bind((host, port))
            except OSError:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing bound {host}:{port}")


async def test_authenticated_user_is_accepted_by_pysnmp_agent_and_a_wrong_key_is_not() -> None:
    """The simulator's users are noAuthNoPriv only: pysnmp's own agent engine (USM, HMAC-SHA-96) judges the MAC,
    the engine boots and time the probe sends after discovery."""
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import cmdrsp, context
    from pysnmp.proto.api import v2c

    host, port = "127.0.151.240", 16151
    agent_engine = engine.SnmpEngine(snmpEngineID=v2c.OctetString(hexValue="800000f80300800000aabb"))
    config.add_transport(agent_engine, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode((host, port)))
    config.add_v3_user(agent_engine, "ops", config.USM_AUTH_HMAC96_SHA, "maplesyrup")
    config.add_vacm_user(agent_engine, 3, "ops", "authNoPriv", (1, 3, 6, 1, 2, 1))
    snmp_context = context.SnmpContext(agent_engine)
    for responder in (cmdrsp.GetCommandResponder, cmdrsp.BulkCommandResponder):
        responder(agent_engine, snmp_context)
    agent_engine.transport_dispatcher.job_started(1)
    agent_engine.open_dispatcher()
    await bound(host, port)
    try:
        obs, link = await probe(host, port, v3_users=[{"user": "ops", "auth_key": "maplesyrup"}])
        assert obs.status is Status.IDENTIFIED, obs.error
        assert obs.identity is not None and obs.identity.raw["engine_id"] == "800000f80300800000aabb"
        assert obs.identity.raw["snmp_device_type"]["enterprise"] == 20408  # pysnmp's own sysObjectID
        assert obs.identity.raw["credential"] == f"v3 user ops (authNoPriv, sha key {fingerprint('maplesyrup')})"
        assert link.packets_sent == 3  # discovery, GetRequest, one GetBulk past the (absent) entity table
        obs, link = await probe(host, port, v3_users=[{"user": "ops", "auth_key": "not-the-key"}])
        assert obs.status is Status.NO_IDENTITY and "wrong digest" in (obs.error or "")
        assert link.packets_sent == 2
    finally:
        agent_engine.close_dispatcher()
