"""EtherNet/IP identity probe: one unicast ListIdentity datagram, TCP Get_Attributes_All when that yields nothing.

Probe card
  Port      44818 (UDP, then TCP); options: `port`, `udp` (default true), `max_response_delay_ms` (default 500).
  Sends, in order, stopping at the first identity:
    1. UDP  ListIdentity 0x63 (24 B) to ip:port from a socket connect()ed to that unicast address, never
       SO_BROADCAST; sender context = Max Response Delay (u16 LE ms) + "otprob". Wait: delay + 0.25 s, capped by
       the profile's response timeout (the advertised delay is lowered to fit). Silence, an ICMP refusal, garbage
       or an error status: go on to TCP.
    2. TCP  connect                                   (1 packet)
    3.      RegisterSession 0x65, version 1           (1)
    4.      SendRRData: Get_Attributes_All 0x01 to Identity class 1 instance 1, unconnected, no route path (1)
    5.      only if 4 got an error status: ListIdentity 0x63 over TCP (1); skipped when step 1 already got an
            explicit error status to ListIdentity, or when RegisterSession was refused (4 is then skipped too)
    6.      UnRegisterSession 0x66, after the last reply, only with a session and no request outstanding (1)
    7.      FIN, then what the device still sends is drained (otprobe.probes.tcp_close); none if the
            device closed or reset first  (1)
  Cost: 1 when UDP answers; 6 on the usual TCP path (1 + 5); max_packets = (1 if udp) + 6 = 7.
  Example: 1769-L18ER/A LOGIX5318ER, vendor 1 (Rockwell Automation/Allen-Bradley), type 14 (Programmable Logic
  Controller), product code "154", firmware "21.11", serial "6043BF65", raw status 0x0030, state 3.

Decisions
  * First TCP query is Get_Attributes_All, not ListIdentity: step 1 already asked ListIdentity, so a device that did
    not answer it (UDP filtered, or an old 1756-ENET that rejects ListIdentity, pycomm3 #294) is best asked the other
    way; it is the Identity object itself, it returns the state attribute on newer devices, and it uses the session
    that RegisterSession opened. TCP ListIdentity remains as the fallback when Get_Attributes_All is refused.
  * Firmware is "major.minor" with plain numbers ("21.11"), the vendor-neutral ODVA rendering; raw["revision"] keeps
    [21, 11], so Rockwell's "21.011" is one format call away and `firmware_version` compares correctly (21.2 < 21.11).
  * Serial is 8 upper-case hex digits without prefix ("6043BF65", as printed on Rockwell labels); raw["serial"] keeps
    the integer.
  * Transport is asyncio, with pycomm3's packet classes building every request (enip_wire). CIPDriver is not driven:
    its open()/close() bundle packets, its Socket.receive loops forever on recv() == b"" when a peer closes
    mid-reply (the `while len(data) - 24 < length` loop never ends), its timeouts are per socket, and a worker thread
    blocked in recv cannot be cancelled by the scheduler. Awaiting asyncio streams gives one announced op per packet,
    wait_for timeouts from the profile, and a `finally` that always closes.
  * UnRegisterSession is skipped when a request is still unanswered (a timeout): it would be a second outstanding
    request (one request in flight: docs/safety.md; pylogix #117). The FIN then ends the session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import yaml
from pydantic import Field

from otprobe.contract import Category, Flag, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProtocolError, ScanAborted
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import asset_type, tcp_close
from otprobe.probes import enip_wire as wire

logging.getLogger("pycomm3").addHandler(logging.NullHandler())
logging.getLogger("pycomm3").propagate = False

UDP_MARGIN_S = 0.25  # how long past the advertised Max Response Delay the probe keeps listening
DEFAULT_DELAY_MS = 500  # OpENer raises 1-499 ms to 500 (docs/protocols.md, EtherNet/IP)


@functools.cache
def _names() -> dict[str, dict[int, str]]:
    text = resources.files("otprobe").joinpath("data", "cip_names.yaml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)
    return {kind: {int(k): v["name"] for k, v in table[kind].items()} for kind in ("vendors", "device_types")}


def vendor_name(vendor_id: int) -> str | None:
    """otprobe's own table first, then pycomm3's (MIT) at run time; None when neither knows the id."""
    from pycomm3.cip.status_info import VENDORS  # pycomm3 only when a device answered, not with the module

    return _names()["vendors"].get(vendor_id) or VENDORS.get(vendor_id)


def device_type_name(device_type: int) -> str | None:
    from pycomm3.cip.status_info import PRODUCT_TYPES  # pycomm3 only when a device answered

    return _names()["device_types"].get(device_type) or PRODUCT_TYPES.get(device_type)


def to_identity(ident: wire.CipIdentity, source: str) -> Identity:
    """Normalise a decoded Identity object; numeric ids kept beside their names, raw fields in `raw`."""
    raw = ident.raw_fields()
    raw["source"] = source
    vendor = vendor_name(ident.vendor_id)
    return Identity(
        vendor=vendor,
        vendor_id=ident.vendor_id,
        product_name=ident.product_name,
        model=ident.product_name,
        product_code=str(ident.product_code),
        device_type=device_type_name(ident.device_type),
        device_type_id=ident.device_type,
        asset_type=asset_type.cip(ident.vendor_id, ident.device_type, vendor, ident.product_name),
        serial=f"{ident.serial:08X}",
        firmware=f"{ident.revision[0]}.{ident.revision[1]}",
        raw=raw,
    )


class _PeerReset(Exception):
    """The device reset the connection: nothing more can reach it on this socket, not even a FIN."""


@dataclass
class _Tcp:
    """One TCP exchange's state, so that the closing steps know what is still owed to the device."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    session: int | None = None
    outstanding: bool = False  # a request was sent and its reply not fully read
    dead: bool = False  # the peer closed or reset the connection: it handles nothing more from us, not even a FIN
    rtt_s: float | None = None  # round trip of the last request answered
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Outcome:
    status: Status
    identity: Identity | None = None
    error: str | None = None
    rtt_s: float | None = None


class EnipOptions(ProbeOptions):
    """`protocols.enip:` in a profile."""

    port: Port = 44818
    udp: Flag = True  # try one unicast ListIdentity datagram before any TCP connection
    max_response_delay_ms: Int = Field(DEFAULT_DELAY_MS, ge=1, le=2000)  # ListIdentity's Max Response Delay


class EnipProbe(Probe):
    name: ClassVar[str] = "enip"
    transports: ClassVar[tuple[str, ...]] = ("udp", "tcp")
    default_port: ClassVar[int] = 44818
    Options = EnipOptions
    # The CIP Identity object is the device's own, but often its communication module's rather than its CPU's
    merge_rank = 2
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("list_identity_udp", "udp:0x63", Kind.DATAGRAM, 1, Category.SAFE, "ListIdentity, unicast datagram"),
        Operation("connect", "tcp:connect", Kind.CONNECT, 1, Category.SAFE, "TCP connect"),
        Operation("register_session", "enip:0x65", Kind.REQUEST, 1, Category.SAFE, "RegisterSession, version 1"),
        Operation("get_attributes_all", "cip:0x01/class:0x01", Kind.REQUEST, 1, Category.SAFE,
                  "SendRRData Get_Attributes_All, Identity class 1 instance 1, unconnected"),
        Operation("list_identity_tcp", "enip:0x63", Kind.REQUEST, 1, Category.SAFE, "ListIdentity over TCP"),
        Operation("unregister_session", "enip:0x66", Kind.REQUEST, 1, Category.SAFE, "UnRegisterSession"),
        Operation("close", "tcp:close", Kind.CLOSE, 1, Category.SAFE, "FIN"),
    )

    options: EnipOptions

    def __init__(self, options: EnipOptions | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.use_udp = self.options.udp
        self.delay_ms = self.options.max_response_delay_ms

    def max_packets(self) -> int:
        return (1 if self.use_udp else 0) + 6

    def typical_packets(self) -> int:
        # the UDP ListIdentity answers; without UDP: connect, RegisterSession, Get_Attributes_All, UnRegister, FIN
        return 1 if self.use_udp else 5

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        """latency_s is the round trip of the exchange that decided the status (pacing waits excluded)."""
        delay_ms = self._advertised_delay_ms(link.timeouts.response_s)
        context = wire.sender_context(delay_ms)
        notes: list[str] = []
        udp_refused = False
        if self.use_udp:
            try:
                ident, rtt = await self._udp(link, target.ip, context, delay_ms / 1000 + UDP_MARGIN_S)
                return self._result(link, target, _Outcome(Status.IDENTIFIED, to_identity(ident, "udp:list_identity"),
                                                           rtt_s=rtt))
            except wire.DeviceRefusal as exc:
                udp_refused = True
                notes.append(f"UDP ListIdentity refused: {exc}")
            except (ProtocolError, OSError) as exc:
                notes.append(f"UDP ListIdentity: {_describe(exc)}")
        outcome = await self._tcp(link, target.ip, context, try_list_identity=not udp_refused)
        if outcome.error and notes:
            outcome = _Outcome(outcome.status, outcome.identity, f"{outcome.error} (after {'; '.join(notes)})",
                               outcome.rtt_s)
        return self._result(link, target, outcome)

    def _advertised_delay_ms(self, response_s: float) -> int:
        """The configured delay, lowered so that delay + margin fits the response timeout; never 0 (= 2000 ms)."""
        fits = int((response_s - UDP_MARGIN_S) * 1000)
        return max(1, min(self.delay_ms, fits))

    def _result(self, link: ProbeLink, target: Target, outcome: _Outcome) -> Observation:
        return Observation(
            target=target.ip, protocol=self.name, port=self.port, status=outcome.status, identity=outcome.identity,
            latency_s=None if outcome.rtt_s is None else round(outcome.rtt_s, 6), packets_sent=link.packets_sent,
            error=outcome.error, device_class=target.device_class,
        )

    # -- UDP ------------------------------------------------------------------------------------------------------

    async def _udp(self, link: ProbeLink, ip: str, context: bytes, wait_s: float) -> tuple[wire.CipIdentity, float]:
        """One ListIdentity datagram from a socket connected to the unicast target; its one reply, or TimeoutError."""
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            # connect() on UDP sends nothing: it fixes the one destination and drops datagrams from anyone else.
            sock.connect((ip, self.port))
            # The reply wait is inside the announced operation: the link times it for adaptive slowdown.
            async with link.op("list_identity_udp"):
                await loop.sock_sendall(sock, wire.list_identity_request(context))
                sent = time.monotonic()
                async with asyncio.timeout(wait_s):  # not wait_for: no task per reply (Python 3.11)
                    reply = await loop.sock_recv(sock, wire.MAX_REPLY)
                rtt = time.monotonic() - sent
        return wire.parse_list_identity_reply(reply, context), rtt

    # -- TCP ------------------------------------------------------------------------------------------------------

    async def _tcp(self, link: ProbeLink, ip: str, context: bytes, *, try_list_identity: bool) -> _Outcome:
        try:
            # asyncio.timeout, not wait_for: the SYN must leave in the link's step, not from a task a loop turn later
            async with link.op("connect"), asyncio.timeout(link.timeouts.connect_s):
                reader, writer = await asyncio.open_connection(ip, self.port)
        except ConnectionRefusedError:
            return _Outcome(Status.REFUSED, error="TCP connection refused")
        except TimeoutError:
            return _Outcome(Status.TIMEOUT, error=f"TCP connect timed out after {link.timeouts.connect_s} s")
        except OSError as exc:
            return _Outcome(Status.REFUSED, error=f"TCP connect failed: {_describe(exc)}")
        conn = _Tcp(reader, writer)
        try:
            ident = await self._identify(link, conn, context, try_list_identity)
            return _Outcome(Status.IDENTIFIED, ident, rtt_s=conn.rtt_s)
        except wire.DeviceRefusal as exc:
            return _Outcome(Status.NO_IDENTITY, error="; ".join([*conn.notes, str(exc)]), rtt_s=conn.rtt_s)
        except ProtocolError as exc:
            return _Outcome(Status.PROTOCOL_ERROR, error=str(exc), rtt_s=conn.rtt_s)
        except TimeoutError:
            return _Outcome(Status.TIMEOUT, error=f"no reply within {link.timeouts.response_s} s")
        except (_PeerReset, asyncio.IncompleteReadError, OSError) as exc:
            return _Outcome(Status.RESET, error=_describe(exc))
        finally:
            await self._close(link, conn, context)

    async def _identify(self, link: ProbeLink, conn: _Tcp, context: bytes, try_list_identity: bool) -> Identity:
        try:
            reply = await self._exchange(link, conn, "register_session", wire.register_session_request(context))
            conn.session = wire.parse_register_session_reply(reply, context)
        except wire.DeviceRefusal as exc:
            if not try_list_identity:
                raise
            conn.notes.append(f"RegisterSession refused: {exc}")
        if conn.session is not None:
            try:
                request = wire.get_attributes_all_request(conn.session, context)
                reply = await self._exchange(link, conn, "get_attributes_all", request)
                ident = wire.parse_get_attributes_all_reply(reply, conn.session, context)
                return to_identity(ident, "tcp:get_attributes_all")
            except wire.DeviceRefusal as exc:
                if not try_list_identity:
                    raise
                conn.notes.append(f"Get_Attributes_All refused: {exc}")
        reply = await self._exchange(link, conn, "list_identity_tcp", wire.list_identity_request(context))
        return to_identity(wire.parse_list_identity_reply(reply, context), "tcp:list_identity")

    async def _exchange(self, link: ProbeLink, conn: _Tcp, op: str, request: bytes) -> bytes:
        """Send one announced request and read its one reply frame within the response timeout.

        The reply is read inside the announced operation, so that the link times send-to-reply for the pacer.
        """
        async with link.op(op):
            conn.writer.write(request)
            conn.outstanding = True
            sent = time.monotonic()
            await self._io(conn, conn.writer.drain(), link.timeouts.response_s)
            reply = await self._io(conn, _read_frame(conn.reader), link.timeouts.response_s)
            conn.rtt_s = time.monotonic() - sent
            conn.outstanding = False
        return reply

    @staticmethod
    async def _io(conn: _Tcp, aw: Any, timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):  # not wait_for: no task per reply (Python 3.11)
                return await aw
        except ConnectionResetError as exc:
            conn.dead = True
            raise _PeerReset(f"connection reset by the device ({exc})") from None
        except asyncio.IncompleteReadError:
            conn.dead = True  # the device closed first (EOF): as after a reset, no FIN of ours is announced
            raise

    async def _close(self, link: ProbeLink, conn: _Tcp, context: bytes) -> None:
        """UnRegisterSession when owed, then FIN. The socket is closed even if the link refuses (cancellation)."""
        try:
            if conn.session is not None and not conn.outstanding and not conn.dead:
                async with link.op("unregister_session"):
                    conn.writer.write(wire.unregister_session_request(conn.session, context))
                    await asyncio.wait_for(conn.writer.drain(), link.timeouts.response_s)
        except (OSError, TimeoutError):
            pass  # the FIN below still goes out; the status already says what happened
        except ScanAborted:
            # Refused at the cutoff: the FIN below (always granted) ends the session all the same, and the identity
            # already read stays the result.
            pass
        finally:
            await tcp_close.close(link, conn.writer.transport, device_ended=conn.dead)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    """One encapsulation frame: the 24-byte header, then exactly the length it declares (capped before reading)."""
    header = await reader.readexactly(wire.HEADER_LEN)
    length = wire.parse_header(header).length
    return header + await reader.readexactly(length)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no reply (timeout)"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"connection closed by the device mid-reply ({len(exc.partial)} of {exc.expected} bytes)"
    if isinstance(exc, ConnectionRefusedError):
        return "refused (nothing listening)"
    return str(exc) or type(exc).__name__
