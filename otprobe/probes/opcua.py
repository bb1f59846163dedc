"""OPC UA identity probe: GetEndpoints over an unsecured channel; BuildInfo through an anonymous session, if enabled.

Probe card
  Port      4840 (option `port`); options: `session_timeout_s` (default 30), and the intrusive `read_build_info`
            (off unless `intrusive: {read_build_info: <reason>}`). One TCP connection, one request in flight, every
            message announced to the link before it is sent (messages built in otprobe.probes.opcua_wire):
    1. connect            tcp:connect        TCP connect                                                   1
    2. hello              uacp:HEL           ReceiveBufferSize = MaxMessageSize = 65,535, MaxChunkCount 1   1
    3. open_channel       uasc:OPN           OpenSecureChannel, SecurityPolicy None, mode None              1
    4. get_endpoints      ua:GetEndpoints    application name and URI, product URI, application type,
                                             security modes and policies, user token types, certificate    1
    only with read_build_info, and only when an endpoint without security accepts an anonymous token:
    5. read_build_info    ua:CreateSession   an anonymous session (INTRUSIVE: it takes one of the server's few
                                             session slots until closed or timed out)                       1
    6. activate_session   ua:ActivateSession AnonymousIdentityToken with the server's own PolicyId           1
    7. read               ua:Read            values of BuildInfo's six variables (i=2261-2266), nothing else  1
    8. close_session      ua:CloseSession    after the last reply, whenever a session was created            1
    9. close_channel      uasc:CLO           CloseSecureChannel (no reply), with no request outstanding     1
   10. close              tcp:close          FIN, then drain (otprobe.probes.tcp_close); none if the device
                                             closed or reset first                                          1
  Cost: 6 (steps 1-4, 9, 10); 10 with BuildInfo; max_packets = 6, or 10 with read_build_info enabled.
  Example: "SIMATIC.S7-1500.OPC-UA.Application:PLC_1", urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_1, product URI
  https://www.siemens.com/s7-1500, OPC UA Server, modes None/SignAndEncrypt; with BuildInfo: vendor "Siemens AG",
  model "SIMATIC S7-1500", firmware "V2.9.2" (the OPC UA server's software version).

Decisions
  * Messages are built and read here, with asyncua's codec, not through asyncua's Client: its connect() sends
    several messages per call and then reads the server state every second from a task of its own until
    disconnect(), none of which could be announced or paced; its decoders also hang on some hostile replies
    (opcua_wire says which), so replies are decoded by opcua_wire's bounded parsers only.
  * GetEndpoints alone identifies the server (status identified); a failure on the session path after it is a note
    in raw["notes"], never a lost identity. A session is created only if the endpoints offer an anonymous token
    without security: otherwise it would only be refused, after taking the server's attention.
  * Sessions live in the server, not in the connection: one left open holds a slot until its timeout, on an S7-1500
    or a PLCnext controller one of a handful. So CloseSession follows whenever CreateSession answered, also after a
    refused ActivateSession or Read, and the requested session timeout is short (`session_timeout_s`). A request
    left unanswered (a timeout) is never followed by another one: then the FIN alone ends the connection, and
    raw["notes"] says a session may remain until its timeout.
  * BuildInfo says what the server software is: on a PLC's built-in server that is the PLC, on a PC or gateway it
    is the software. Its fields rank below every device protocol's (`merge_rank`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from otprobe.contract import Category, Float, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProtocolError, ScanAborted
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import asset_type, tcp_close
from otprobe.probes import opcua_wire as wire

BUILD_INFO = "read_build_info"
SESSION_OPERATIONS = 4  # CreateSession, ActivateSession, Read, CloseSession


class _DeviceEnded(Exception):
    """The device closed or reset the connection: nothing more reaches it on this socket, not even a FIN."""


@dataclass
class _Conn:
    """One connection's state, so that the closing steps know what is still owed to the server."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    channel: wire.SecureChannel
    channel_open: bool = False
    session: bool = False  # CreateSession answered: a CloseSession is owed
    outstanding: bool = False  # a request was sent and its reply not fully read
    dead: bool = False  # the device closed or reset the connection
    rtt_s: float | None = None  # round trip of the last request answered
    notes: list[str] = field(default_factory=list)


class OpcuaOptions(ProbeOptions):
    """`protocols.opcua:` in a profile."""

    port: Port = 4840
    # how long the server keeps a session this probe could not close (a timeout, the scan's deadline); it also has
    # to outlast the pacing gap between two requests of the session
    session_timeout_s: Float = Field(30.0, ge=5, le=600)


class OpcuaProbe(Probe):
    name: ClassVar[str] = "opcua"
    transports: ClassVar[tuple[str, ...]] = ("tcp",)
    default_port: ClassVar[int] = 4840
    Options = OpcuaOptions
    # BuildInfo describes the OPC UA server software, which on a PC or gateway is not the device; the device type is
    # only "an OPC UA server": every device protocol's word weighs more.
    merge_rank = 1
    field_ranks: ClassVar[dict[str, int]] = {"device_type": 0}
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("connect", "tcp:connect", Kind.CONNECT, description="TCP connect"),
        Operation("hello", "uacp:HEL", description="Hello: buffer sizes, endpoint URL"),
        Operation("open_channel", "uasc:OPN", description="OpenSecureChannel, SecurityPolicy None"),
        Operation("get_endpoints", "ua:GetEndpoints", description="GetEndpoints: application, security, certificate"),
        Operation(BUILD_INFO, "ua:CreateSession", category=Category.INTRUSIVE,
                  description="CreateSession for the BuildInfo read: takes one of the server's session slots"),
        Operation("activate_session", "ua:ActivateSession", description="ActivateSession, anonymous token"),
        Operation("read", "ua:Read", description="Read of the BuildInfo variables i=2261-2266 only"),
        Operation("close_session", "ua:CloseSession", description="CloseSession"),
        Operation("close_channel", "uasc:CLO", description="CloseSecureChannel"),
        Operation("close", "tcp:close", Kind.CLOSE, description="FIN"),
    )

    options: OpcuaOptions

    def __init__(self, options: OpcuaOptions | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.read_build_info = BUILD_INFO in self.options.intrusive

    def max_packets(self) -> int:
        return 6 + (SESSION_OPERATIONS if self.read_build_info else 0)

    def typical_packets(self) -> int:
        return self.max_packets()  # every answering server runs the whole exchange

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        """latency_s is the round trip of the last request answered (pacing waits excluded)."""
        url = f"opc.tcp://{target.ip}:{self.port}"
        identity: Identity | None = None
        conn: _Conn | None = None
        try:
            # asyncio.timeout, not wait_for: the SYN must leave in the link's step, not from a task a loop turn later
            async with link.op("connect"), asyncio.timeout(link.timeouts.connect_s):
                reader, writer = await asyncio.open_connection(target.ip, self.port)
        except ConnectionRefusedError:
            return self._result(link, target, None, Status.REFUSED, "TCP connection refused")
        except TimeoutError:
            return self._result(link, target, None, Status.TIMEOUT,
                                f"TCP connect timed out after {link.timeouts.connect_s} s")
        except OSError as exc:
            return self._result(link, target, None, Status.REFUSED, f"TCP connect failed: {exc}")
        conn = _Conn(reader, writer, wire.SecureChannel(url, int(link.timeouts.response_s * 1000)))
        try:
            identity = await self._identify(link, conn)
            status, error = Status.IDENTIFIED, None
        except wire.DeviceRefusal as exc:
            status, error = Status.NO_IDENTITY, str(exc)
        except ProtocolError as exc:
            status, error = Status.PROTOCOL_ERROR, str(exc)
        except TimeoutError:
            status, error = Status.TIMEOUT, f"no reply within {link.timeouts.response_s} s"
        except (_DeviceEnded, OSError) as exc:
            status, error = Status.RESET, str(exc) or type(exc).__name__
        finally:
            await self._finish(link, conn)
        if identity is not None and conn.notes:
            identity.raw["notes"] = conn.notes
        return self._result(link, target, identity, status, error, conn.rtt_s)

    def _result(self, link: ProbeLink, target: Target, identity: Identity | None, status: Status,
                error: str | None, rtt_s: float | None = None) -> Observation:
        return Observation(
            target=target.ip, protocol=self.name, port=self.port, status=status, identity=identity,
            latency_s=None if rtt_s is None else round(rtt_s, 6), packets_sent=link.packets_sent, error=error,
            device_class=target.device_class,
        )

    async def _identify(self, link: ProbeLink, conn: _Conn) -> Identity:
        channel = conn.channel
        ack = wire.parse_acknowledge(await self._exchange(link, conn, "hello", wire.hello(channel.endpoint_url)))
        wire.parse_open(await self._exchange(link, conn, "open_channel", channel.open()), channel)
        conn.channel_open = True
        endpoints = wire.parse_endpoints(await self._exchange(link, conn, "get_endpoints", channel.get_endpoints()),
                                         channel)
        identity = to_identity(endpoints)
        identity.raw["server_buffers"] = {"receive": ack.ReceiveBufferSize, "send": ack.SendBufferSize}
        if self.read_build_info:
            policy = wire.anonymous_policy(endpoints)
            if policy is None:
                conn.notes.append("BuildInfo not read: no endpoint without security takes an anonymous user")
                return identity
            try:
                add_build_info(identity, await self._build_info(link, conn, policy))
            except (ProtocolError, TimeoutError, OSError, _DeviceEnded, ScanAborted) as exc:
                conn.notes.append(f"BuildInfo not read: {_describe(exc)}")
        return identity

    async def _build_info(self, link: ProbeLink, conn: _Conn, policy: str) -> dict[str, str | None]:
        channel = conn.channel
        request = channel.create_session(self.options.session_timeout_s)
        reply = await self._exchange(link, conn, BUILD_INFO, request)
        wire.parse_create_session(reply, channel)
        conn.session = True
        reply = await self._exchange(link, conn, "activate_session", channel.activate_session(policy))
        wire.parse_activate_session(reply, channel)
        return wire.parse_read(await self._exchange(link, conn, "read", channel.read_build_info()), channel)

    async def _exchange(self, link: ProbeLink, conn: _Conn, op: str, request: bytes) -> bytes:
        """Send one announced request and read its one reply message within the response timeout.

        The reply is read inside the announced operation, so that the link times send-to-reply for the pacer.
        """
        if conn.dead:
            raise _DeviceEnded("connection closed by the device")
        async with link.op(op):
            conn.writer.write(request)
            conn.outstanding = True
            sent = time.monotonic()
            async with asyncio.timeout(link.timeouts.response_s):  # not wait_for: no task per reply (Python 3.11)
                reply = await self._reply(conn)
            conn.rtt_s = time.monotonic() - sent
            conn.outstanding = False
        return reply

    @staticmethod
    async def _reply(conn: _Conn) -> bytes:
        """One message: the 8-byte header, checked before the size it claims is read."""
        header = b""
        try:
            await conn.writer.drain()
            header = await conn.reader.readexactly(wire.HEADER_LEN)
            size = wire.parse_header(header)[1]
            return header + await conn.reader.readexactly(size - wire.HEADER_LEN)
        except asyncio.IncompleteReadError as exc:
            conn.dead = True  # the device closed first: as after a reset, no FIN of ours is announced
            if header or exc.partial:
                raise ProtocolError(f"connection closed by the device mid-reply "
                                    f"({len(header) + len(exc.partial)} bytes received)") from None
            raise _DeviceEnded("connection closed by the device") from None
        except ConnectionError as exc:
            conn.dead = True
            raise _DeviceEnded(f"connection reset by the device ({exc})") from None

    async def _finish(self, link: ProbeLink, conn: _Conn) -> None:
        """CloseSession and CLO when owed and possible, then FIN; the socket is closed on every path."""
        try:
            if conn.session and not conn.outstanding and not conn.dead:
                reply = await self._exchange(link, conn, "close_session", conn.channel.close_session())
                wire.parse_close_session(reply, conn.channel)
                conn.session = False
            if conn.channel_open and not conn.outstanding and not conn.dead:
                async with link.op("close_channel"):
                    conn.writer.write(conn.channel.close())
                    await asyncio.wait_for(conn.writer.drain(), link.timeouts.response_s)
        except (ProtocolError, TimeoutError, OSError, _DeviceEnded, ScanAborted) as exc:
            # the FIN below still goes out; a refusal at the scan's cutoff leaves the identity read so far standing
            conn.notes.append(f"closing: {_describe(exc)}")
        finally:
            if conn.session:
                conn.notes.append("the session may stay open on the server until its timeout")
            await tcp_close.close(link, conn.writer.transport, device_ended=conn.dead)


def to_identity(endpoints: list[Any]) -> Identity:
    """The server's identity as its endpoints describe it; BuildInfo, when read, is added by `add_build_info`."""
    server = endpoints[0].Server
    application_type = wire.APPLICATION_TYPES.get(int(server.ApplicationType), f"unknown ({server.ApplicationType})")
    summaries = [wire.endpoint_summary(endpoint) for endpoint in endpoints]
    raw: dict[str, Any] = {
        "application_type": application_type,
        "application_uri": server.ApplicationUri,
        "application_name": server.ApplicationName.Text if server.ApplicationName else None,
        "product_uri": server.ProductUri,
        "security_modes": sorted({s["security_mode"] for s in summaries}),
        "security_policies": sorted({s["security_policy"] for s in summaries if s["security_policy"]}),
        "user_token_types": sorted({token for s in summaries for token in s["user_tokens"]}),
        "anonymous_without_security": wire.anonymous_policy(endpoints) is not None,
        "endpoints": summaries,
    }
    certificate = next((e.ServerCertificate for e in endpoints if e.ServerCertificate), None)
    if certificate is not None:
        try:
            raw["certificate"] = wire.certificate_info(certificate)
        except ProtocolError as exc:
            raw["certificate_error"] = str(exc)
    return Identity(
        product_name=raw["application_name"],
        asset_type=asset_type.opcua(int(server.ApplicationType), None, raw["application_name"],
                                    server.ApplicationUri, server.ProductUri),
        device_type=f"OPC UA {application_type}",
        device_type_id=int(server.ApplicationType),
        raw=raw,
    )


def add_build_info(identity: Identity, info: dict[str, str | None]) -> None:
    """ManufacturerName -> vendor, ProductName -> model and product_name, SoftwareVersion -> firmware."""
    identity.raw["build_info"] = info
    identity.vendor = info["ManufacturerName"] or identity.vendor
    identity.model = info["ProductName"]
    identity.product_name = info["ProductName"] or identity.product_name
    identity.firmware = info["SoftwareVersion"]
    if identity.asset_type == "server":  # BuildInfo names maker and product: a controller's server may show now
        identity.asset_type = asset_type.from_products("opcua", identity.vendor, identity.product_name,
                                                       identity.raw["application_uri"]) or "server"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no reply (timeout)"
    return str(exc) or type(exc).__name__
