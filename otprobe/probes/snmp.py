"""SNMP identity probe: the system group and the ENTITY-MIB chassis and module rows, with configured credentials only.

Probe card
  Port      161/udp; options: `port`, `communities` (v2c), `v3_users` (user, optional `auth_key` and
            `auth_protocol` md5|sha for authNoPriv), `max_rows` (default 8, ENTITY-MIB rows read at most), `walk`
            (getbulk, the default, or getnext for agents whose GetBulk is broken).
  Off unless the profile names a community or a v3 user: credentials are never guessed, and `public` is sent only
  when a profile lists it. A secret is written as itself, as `env:NAME` (an environment variable) or as
  `file:/path` (a file no group or other user may read); it is never printed, logged or stored: a credential is
  named by the first 12 hex digits of its SHA-256 (`raw["credential"]`).
  Sends, in order, one datagram per request from a fresh socket connect()ed to the unicast target (a late answer to
  an earlier request finds no listener), each waiting its reply up to the profile's response timeout:
    1. only with v3 users: the USM discovery, a GetRequest with no varbind, no engine id and no user (1). Its
       Report names the engine id, boots and time the next requests must carry; silence skips every v3 user.
    2. GetRequest sysDescr.0, sysObjectID.0, sysUpTime.0, sysName.0, sysServices.0, once per credential until
       one is answered:
       the v3 users in the profile's order (a Report, e.g. unknown user, moves on), then the communities (silence
       is how an agent refuses a community, so each costs one request and one response timeout)      (1 each)
    3. with the credential that answered: GetBulk (non-repeaters 0, max-repetitions 4) of the eight
       entPhysicalTable columns read, each column walked from where its last reply left it, until every column
       left the table or gave `max_rows` rows; `walk: getnext` asks one row per GetNext.
       At most ceil(max_rows / 4) GetBulk or max_rows GetNext requests          (2 with the defaults)
  Cost: max_packets = (1 + users if v3 users) + communities + the step 3 bound; 3 for one community (the lab).
  Example: Hirschmann RS20: sysDescr "Hirschmann Railswitch", sysObjectID 1.3.6.1.4.1.248.14 (enterprise 248),
  chassis RS20-0800T1T1SDAUHC serial 943434001 hardware 1.07, module RS20-CPU firmware 09.0.08.

Decisions
  * pysnmp 7 is a codec here (snmp_wire), never a client: its command generator retries five times by default,
    each retry a datagram the pacer never granted, and it consumes replies where the link cannot time them.
  * v3 users are tried before communities: a community travels in clear text, so it is sent only when no user
    answered.
  * The entity walk asks only the columns the identity needs (RFC 6933: ContainedIn, Class, HardwareRev,
    FirmwareRev, SoftwareRev, SerialNum, MfgName, ModelName): four rows of eight columns keep a reply near one
    Ethernet frame, and a chassis full of ports and sensors costs no more than `max_rows` rows.
  * A hostile or malformed reply ends the run (protocol_error); an unreadable entity table after an answered system
    group keeps the identity, with what went wrong in raw["partial"].
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import socket
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from otprobe.contract import Flag, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProtocolError
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import asset_type

if TYPE_CHECKING:  # the wire module imports pysnmp: loaded when a probe runs, not with the registry
    from otprobe.probes import snmp_wire

OID = tuple[int, ...]
SYSTEM = (1, 3, 6, 1, 2, 1, 1)
# sysServices is in RFC 3418's mandatory system group: one more varbind, no more packets, and the OSI layers the
# agent serves (2: a switch, 3: a router) where no product data says what the device is
SYSTEM_OIDS: dict[str, OID] = {"sys_descr": (*SYSTEM, 1, 0), "sys_object_id": (*SYSTEM, 2, 0),
                               "sys_uptime": (*SYSTEM, 3, 0), "sys_name": (*SYSTEM, 5, 0),
                               "sys_services": (*SYSTEM, 7, 0)}
ENT_PHYSICAL_ENTRY = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1)
# entPhysicalEntry columns read (RFC 6933)
COLUMNS: dict[str, int] = {"contained_in": 4, "class": 5, "hardware_rev": 8, "firmware_rev": 9, "software_rev": 10,
                           "serial": 11, "mfg_name": 12, "model_name": 13}
TEXT_COLUMNS = ("hardware_rev", "firmware_rev", "software_rev", "serial", "mfg_name", "model_name")
# entPhysicalClass values (RFC 6933); the identity comes from chassis and module rows
CLASSES = {1: "other", 2: "unknown", 3: "chassis", 4: "backplane", 5: "container", 6: "powerSupply", 7: "fan",
           8: "sensor", 9: "module", 10: "port", 11: "stack", 12: "cpu"}
CHASSIS, MODULE = 3, 9
ENTERPRISES_ARC = (1, 3, 6, 1, 4, 1)
# Private enterprise numbers (IANA registry) of vendors found in plants; the rest are kept as numbers
ENTERPRISES = {9: "Cisco", 248: "Hirschmann", 4196: "Siemens", 4329: "Siemens", 4346: "Phoenix Contact",
               8691: "Moxa"}
ROWS_PER_BULK = 4
MAX_COMMUNITIES, MAX_USERS = 8, 4


# -- secrets ----------------------------------------------------------------------------------------------------------

def resolve_secret(value: object) -> object:
    """A secret as written in a profile: itself, `env:NAME` or `file:/path` (a 0600 file). Errors never quote it."""
    if isinstance(value, SecretStr) or not isinstance(value, str):
        return value  # already resolved, or pydantic's own type error
    if value.startswith("env:"):
        name = value[4:]
        secret = os.environ.get(name, "")
        if not name or not secret:
            raise ValueError(f"environment variable {name or '(no name)'} is not set or empty")
        return secret
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            mode = path.stat().st_mode
            if stat.S_IMODE(mode) & 0o077:
                raise ValueError(f"{path} has mode {stat.S_IMODE(mode):04o}: a secret file must be readable by its "
                                 "owner only (chmod 600)")
            secret = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if not secret:
            raise ValueError(f"{path} is empty")
        return secret
    if not value:
        raise ValueError("empty secret")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]


def fingerprint(secret: str) -> str:
    """Names a secret in results without revealing it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class V3User(BaseModel):
    """One `v3_users` entry: noAuthNoPriv without `auth_key`, authNoPriv with it (privacy is not supported)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(min_length=1, max_length=32)
    auth_key: Secret | None = None
    auth_protocol: Literal["md5", "sha"] = "sha"

    @model_validator(mode="after")
    def _key_length(self) -> V3User:
        if self.auth_key is not None and len(self.auth_key.get_secret_value()) < 8:
            raise ValueError("auth_key: at least 8 characters (RFC 3414 passphrases)")
        return self


class SnmpOptions(ProbeOptions):
    """`protocols.snmp:` in a profile."""

    port: Port = 161
    enabled: Flag = False  # turned on by naming a credential, see _enabled_by_credentials
    communities: list[Secret] = Field(default=[], max_length=MAX_COMMUNITIES)
    v3_users: list[V3User] = Field(default=[], max_length=MAX_USERS)
    max_rows: Int = Field(8, ge=1, le=64)
    walk: Literal["getbulk", "getnext"] = "getbulk"

    @model_validator(mode="before")
    @classmethod
    def _enabled_by_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": bool(data.get("communities") or data.get("v3_users"))}
        return data

    @model_validator(mode="after")
    def _credentials_when_enabled(self) -> SnmpOptions:
        if self.enabled and not (self.communities or self.v3_users):
            raise ValueError("enabled without a community or a v3 user: SNMP credentials are never guessed")
        return self


# -- the probe --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """One way to ask: a v2c community, or a v3 user (with its passphrase for authNoPriv)."""

    label: str  # what results say answered: never the secret itself
    community: bytes = b""
    user: V3User | None = None


def _user_label(user: V3User) -> str:
    if user.auth_key is None:
        return f"v3 user {user.user} (noAuthNoPriv)"
    return f"v3 user {user.user} (authNoPriv, {user.auth_protocol} key {fingerprint(user.auth_key.get_secret_value())})"


class _Failed(Exception):
    def __init__(self, status: Status, error: str) -> None:
        super().__init__(error)
        self.status = status


class SnmpProbe(Probe):
    name: ClassVar[str] = "snmp"
    transports: ClassVar[tuple[str, ...]] = ("udp",)
    default_port: ClassVar[int] = 161
    Options = SnmpOptions
    # An agent on a PLC's communication module or a switch describes that box, not the controller behind it: below
    # the protocols that ask the controller itself; its ENTITY-MIB serial and hardware revision are the device's own.
    merge_rank = 1
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("discovery", "snmp:get", Kind.DATAGRAM, 1,
                  description="SNMPv3 USM discovery: GetRequest with no varbind, no engine id, no user"),
        Operation("get_system", "snmp:get", Kind.DATAGRAM, 1,
                  description="GetRequest sysDescr, sysObjectID, sysUpTime, sysName (once per credential tried)"),
        Operation("getbulk_entities", "snmp:getbulk", Kind.DATAGRAM, 1,
                  description="GetBulkRequest of 8 entPhysicalTable columns, 4 rows"),
        Operation("getnext_entities", "snmp:getnext", Kind.DATAGRAM, 1,
                  description="GetNextRequest of 8 entPhysicalTable columns, 1 row (option walk: getnext)"),
    )

    options: SnmpOptions

    def __init__(self, options: SnmpOptions | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        users = [Credential(_user_label(u), user=u) for u in self.options.v3_users]
        communities = [Credential(f"v2c community {fingerprint(c.get_secret_value())}",
                                  community=c.get_secret_value().encode()) for c in self.options.communities]
        self.credentials: tuple[Credential, ...] = (*users, *communities)
        self.rows_per_request = ROWS_PER_BULK if self.options.walk == "getbulk" else 1

    def entity_requests(self) -> int:
        return math.ceil(self.options.max_rows / self.rows_per_request)

    def max_packets(self) -> int:
        if not self.credentials:
            return 0
        discovery = 1 if self.options.v3_users else 0
        return discovery + len(self.credentials) + self.entity_requests()

    def typical_packets(self) -> int:
        # the first credential answers (a v3 user after its discovery request) and one entity request holds the rows
        if not self.credentials:
            return 0
        return (2 if self.options.v3_users else 1) + 1

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        """latency_s is the round trip of the request that the system group answered."""
        if not self.credentials:
            return self._result(link, target, Status.NO_IDENTITY, error="no community or v3 user configured: "
                                "nothing sent (SNMP credentials are never guessed)")
        from otprobe.probes import snmp_wire  # pysnmp only when a device is asked

        session = _Session(self, link, target.ip, snmp_wire)
        try:
            system = await session.system_group()
        except _Failed as exc:
            return self._result(link, target, exc.status, error=str(exc), rtt=session.last_rtt)
        except ProtocolError as exc:
            return self._result(link, target, Status.PROTOCOL_ERROR, error=str(exc), rtt=session.last_rtt)
        except ConnectionRefusedError:
            return self._result(link, target, Status.REFUSED, error="refused (ICMP port unreachable: no agent)")
        except OSError as exc:
            return self._result(link, target, Status.REFUSED, error=f"send failed: {exc.strerror or exc}")
        partial = None
        try:
            await session.walk_entities()
        except (ProtocolError, _Failed) as exc:
            partial = f"entity table: {exc}"
        except TimeoutError:
            partial = f"entity table: no reply within {link.timeouts.response_s} s"
        except OSError as exc:
            partial = f"entity table: {exc.strerror or exc}"
        identity = to_identity(system, session.rows(), snmp_wire)
        identity.raw.update(session.facts())
        if partial:
            identity.raw["partial"] = partial
        return self._result(link, target, Status.IDENTIFIED, identity=identity, rtt=session.rtt)

    def _result(self, link: ProbeLink, target: Target, status: Status, *, identity: Identity | None = None,
                error: str | None = None, rtt: float | None = None) -> Observation:
        return Observation(
            target=target.ip, protocol=self.name, port=self.port, status=status, identity=identity,
            latency_s=None if rtt is None else round(rtt, 6), packets_sent=link.packets_sent, error=error,
            device_class=target.device_class,
        )


@dataclass
class _Session:
    """One run's exchanges with one agent: the engine found, the credential that answered, the rows read."""

    probe: SnmpProbe
    link: ProbeLink
    ip: str
    wire: Any  # the snmp_wire module, imported by run()
    engine: snmp_wire.Engine | None = None
    engine_at: float = 0.0  # when the engine's time was read, to advance it for later requests
    answered: Credential | None = None
    keys: dict[str, snmp_wire.Auth] = field(default_factory=dict)  # credential label -> key localised to the engine
    rtt: float | None = None  # round trip of the request the system group answered
    last_rtt: float | None = None  # of the last reply read
    entities: dict[int, dict[str, Any]] = field(default_factory=dict)
    truncated: bool = False

    async def system_group(self) -> dict[str, Any]:
        """Ask the system group with each credential in turn; the first answer's values by name."""
        refusals: list[str] = []
        silent = 0
        discovered = False
        for credential in self.probe.credentials:
            if credential.user is not None:
                if not discovered:
                    discovered = True
                    try:
                        await self._discover()
                    except TimeoutError:
                        silent += 1  # no engine id: every v3 user is skipped
                if self.engine is None:
                    continue
            try:
                reply = await self.request(credential, "get_system", "get", list(SYSTEM_OIDS.values()))
            except TimeoutError:
                silent += 1
                continue
            if reply.report:
                refusals.append(f"{credential.label}: report {reply.report}")
                continue
            if reply.error_status:
                raise _Failed(Status.NO_IDENTITY, f"the system group was refused (error-status {reply.error_status})")
            self.answered, self.rtt = credential, self.last_rtt
            return {name: value for name, (_, value) in zip(SYSTEM_OIDS, reply.varbinds, strict=False)}
        waited = f"no answer within {self.link.timeouts.response_s} s to {silent} request(s)"
        if refusals:
            raise _Failed(Status.NO_IDENTITY, f"no configured credential was accepted: {'; '.join(refusals)} "
                                              f"({waited})")
        raise _Failed(Status.TIMEOUT, f"{waited}: silence is also how an agent refuses a community")

    async def _discover(self) -> None:
        msg_id, request_id = self.wire.new_id(), self.wire.new_id()
        data = await self._send("discovery", self.wire.v3_request("get", msg_id, request_id, []))
        _, self.engine = self.wire.parse_v3_reply(data, msg_id, request_id, 0)
        self.engine_at = time.monotonic()

    def _engine_now(self) -> snmp_wire.Engine:
        assert self.engine is not None
        elapsed = int(time.monotonic() - self.engine_at)
        return self.wire.Engine(self.engine.engine_id, self.engine.boots, min(self.engine.time + elapsed, 2**31 - 1))

    async def request(self, credential: Credential, op: str, kind: str, oids: Sequence[OID],
                      repetitions: int = 0) -> snmp_wire.Reply:
        """One announced request with this credential, and its checked reply."""
        wire = self.wire
        request_id = wire.new_id()
        least = 0 if kind == "getbulk" else len(oids)  # GetBulk may return fewer to fit a message (RFC 3416 4.2.3)
        user = credential.user
        if user is None:
            data = wire.v2c_request(kind, credential.community, request_id, oids, repetitions)
            return wire.parse_v2c_reply(await self._send(op, data), credential.community, request_id, least)
        auth = None
        if user.auth_key is not None:
            # derived before the request is announced, once per user: hashing the passphrase takes a while
            if credential.label not in self.keys:
                self.keys[credential.label] = wire.localized_key(user.auth_protocol, user.auth_key.get_secret_value(),
                                                                 self._engine_now().engine_id)
            auth = self.keys[credential.label]
        msg_id = wire.new_id()
        data = wire.v3_request(kind, msg_id, request_id, oids, user=user.user.encode(), engine=self._engine_now(),
                               auth=auth, max_repetitions=repetitions)
        reply, engine = wire.parse_v3_reply(await self._send(op, data), msg_id, request_id, least)
        if self.engine is not None and engine.engine_id != self.engine.engine_id:
            raise ProtocolError("reply names another engine id than the discovery did")
        return reply

    async def _send(self, op: str, data: bytes) -> bytes:
        """One datagram and its one reply; TimeoutError when none comes within the response timeout."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            async with self.link.op(op):
                # connect() sends nothing: it fixes the one peer whose datagrams this socket accepts
                sock.connect((self.ip, self.probe.port))
                sock.send(data)
                sent = time.monotonic()
                async with asyncio.timeout(self.link.timeouts.response_s):  # not wait_for: no task per reply (3.11)
                    reply = await loop.sock_recv(sock, self.wire.MAX_REPLY + 1)
                self.last_rtt = time.monotonic() - sent
        return reply

    async def walk_entities(self) -> None:
        """Walk the entPhysicalTable columns side by side, each from its own last OID, within the request bound."""
        assert self.answered is not None
        probe = self.probe
        cursors = {name: (*ENT_PHYSICAL_ENTRY, column) for name, column in COLUMNS.items()}
        counts = dict.fromkeys(COLUMNS, 0)
        active = list(COLUMNS)
        getbulk = probe.options.walk == "getbulk"
        for _ in range(probe.entity_requests()):
            repetitions = min(probe.rows_per_request, probe.options.max_rows - min(counts[n] for n in active))
            reply = await self.request(self.answered, "getbulk_entities" if getbulk else "getnext_entities",
                                       "getbulk" if getbulk else "getnext", [cursors[n] for n in active], repetitions)
            if reply.error_status:
                raise _Failed(Status.NO_IDENTITY, f"error-status {reply.error_status}")
            finished: set[str] = set()
            for position, (oid, value) in enumerate(reply.varbinds):
                name = active[position % len(active)]
                column = (*ENT_PHYSICAL_ENTRY, COLUMNS[name])
                if name in finished:
                    continue
                # past the column (next column, another table, endOfMibView) or not moving forward: done
                if (isinstance(value, self.wire.Missing) or len(oid) != len(column) + 1
                        or oid[: len(column)] != column or oid <= cursors[name]):
                    finished.add(name)
                    continue
                cursors[name] = oid
                self.entities.setdefault(oid[-1], {})[name] = value
                counts[name] += 1
                if counts[name] >= probe.options.max_rows:
                    self.truncated = True
                    finished.add(name)
            if not reply.varbinds:
                return
            active = [n for n in active if n not in finished]
            if not active:
                return
        self.truncated = True  # the request bound ended the walk

    def rows(self) -> list[dict[str, Any]]:
        """The chassis and module rows read, at most max_rows rows in index order."""
        rows = []
        for index in sorted(self.entities)[: self.probe.options.max_rows]:
            values = self.entities[index]
            klass = values.get("class")
            if klass not in (CHASSIS, MODULE):
                continue
            contained = values.get("contained_in")
            rows.append({"index": index, "class": CLASSES[klass],
                         "contained_in": contained if isinstance(contained, int) else None,
                         **{name: self.wire.text(values.get(name)) for name in TEXT_COLUMNS}})
        return rows

    def facts(self) -> dict[str, Any]:
        """How the identity was read, for raw: version, which credential (by fingerprint), the engine."""
        assert self.answered is not None
        facts: dict[str, Any] = {"snmp_version": "v2c" if self.answered.user is None else "v3",
                                 "credential": self.answered.label, "entity_rows_truncated": self.truncated}
        if self.engine is not None:
            facts["engine_id"] = self.engine.engine_id.hex()
        return facts


def to_identity(system: dict[str, Any], rows: list[dict[str, Any]], wire: Any) -> Identity:
    """Normalise the system group and the chassis/module rows; what the device says it is goes to raw."""
    object_id = system.get("sys_object_id")
    object_id = object_id if isinstance(object_id, tuple) else None
    enterprise = (object_id[len(ENTERPRISES_ARC)] if object_id and len(object_id) > len(ENTERPRISES_ARC)
                  and object_id[: len(ENTERPRISES_ARC)] == ENTERPRISES_ARC else None)
    chassis = [r for r in rows if r["class"] == "chassis"]
    # the outermost chassis (contained in nothing) describes the device; modules carry what the chassis lacks
    ordered = sorted(chassis, key=lambda r: r["contained_in"] != 0) + [r for r in rows if r["class"] == "module"]

    def first(*keys: str) -> str | None:
        for key in keys:
            for row in ordered:
                if row[key]:
                    return str(row[key])
        return None

    descr = wire.text(system.get("sys_descr"))
    uptime = system.get("sys_uptime")
    services = system.get("sys_services")
    services = services if isinstance(services, int) else None  # noSuchObject from an agent without it
    vendor = first("mfg_name") or (ENTERPRISES.get(enterprise) if enterprise is not None else None)
    model = first("model_name")
    classes = sorted({r["class"] for r in rows})
    return Identity(
        vendor=vendor,
        product_name=descr,
        model=model,
        asset_type=asset_type.snmp(vendor, (model, descr), object_id, services, classes),
        serial=first("serial"),
        firmware=first("firmware_rev", "software_rev"),
        hardware_version=first("hardware_rev"),
        raw={
            "sys_descr": descr,
            "sys_name": wire.text(system.get("sys_name")),
            "sys_uptime_s": uptime / 100 if isinstance(uptime, int) else None,
            # what the device says it is: its sysObjectID (enterprise arc, then the vendor's product arcs) and the
            # physical entities it reports
            "snmp_device_type": {
                "sys_object_id": ".".join(map(str, object_id)) if object_id else None,
                "enterprise": enterprise,
                "enterprise_name": ENTERPRISES.get(enterprise) if enterprise is not None else None,
                "sys_services": services,
                "entity_classes": classes,
            },
            "entities": rows,
        },
    )
