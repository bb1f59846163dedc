"""The S7 probe against python-snap7's own server, a stock S7 peer anyone can run, and the SZL parsers fuzzed.

That server answers SZL 0x0011 with one 26-byte record (a real CPU sends 28-byte ones) and SZL 0x001C with a list
header of 0 records of 0 bytes followed by 206 bytes of records whose index is left 0x0000. The probe must read
every identity field there, say in raw["partial"] what it read and why, and never fail on such lists.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snap7.server import EVC_CLIENT_ADDED, EVC_CLIENT_DISCONNECTED, Server

from otprobe.contract import Timeouts
from otprobe.errors import ProtocolError
from otprobe.link import Link
from otprobe.model import Status, Target
from otprobe.probes import s7_wire as wire
from otprobe.probes.s7 import S7Probe

_hosts = (f"127.0.143.{n}" for n in itertools.count(1))
TIMEOUTS = Timeouts(connect_s=1.0, response_s=1.0)
SNAP7_SERIAL = "S C-C2UR28922012"  # what python-snap7 3.3's server puts in SZL 0x001C


class _StockServer(Server):
    """python-snap7's server as shipped; it only notes which SZL lists were asked for, then answers as it does."""

    def __init__(self) -> None:
        super().__init__(log=False)
        self.szl_asked: list[int] = []
        self._asked_lock = threading.Lock()
        self._codes: list[int] = []

    def _get_szl_data(self, szl_id: int, szl_index: int) -> bytes | None:
        with self._asked_lock:
            self.szl_asked.append(szl_id)
        return super()._get_szl_data(szl_id, szl_index)

    def event_codes(self) -> list[int]:
        """Codes of the events the server has queued so far (client added, disconnected...)."""
        while (event := self.pick_event()) is not False:
            self._codes.append(event.EvtCode)
        return self._codes


@contextmanager
def stock_server() -> Iterator[tuple[_StockServer, str, int]]:
    host, server = next(_hosts), _StockServer()
    server.start_to(host, 0)  # port 0: the kernel picks a free unprivileged port
    assert server.server_socket is not None
    try:
        yield server, host, server.server_socket.getsockname()[1]
    finally:
        server.stop()


def _list_data(szl_id: int) -> bytes:
    """SZL id, index, header and records exactly as the stock server lays them out in its reply."""
    data = Server(log=False)._get_szl_data(szl_id, 0)
    assert data is not None
    return struct.pack(">HH", szl_id, 0) + data


STOCK_0011 = _list_data(0x0011)
STOCK_001C = _list_data(0x001C)


# --- the probe against the real server ------------------------------------------------------------------------


async def test_stock_server_yields_order_code_firmware_and_serial(eventually: Callable[..., Any]) -> None:
    with stock_server() as (server, host, port):
        probe = S7Probe({"port": port, "rack_slots": [[0, 2]]})
        link = Link(probe, Target(host, "plc"), timeouts=TIMEOUTS)
        observation = await probe.run(link, Target(host, "plc"))
        # the server notes the disconnect in its own thread
        await eventually(lambda: EVC_CLIENT_DISCONNECTED in server.event_codes())
        codes, asked = server.event_codes(), list(server.szl_asked)
    assert observation.status is Status.IDENTIFIED, observation.error
    ident = observation.identity
    assert ident is not None
    assert (ident.product_code, ident.firmware, ident.serial) == ("6ES7 315-2EH14-0AB0", "V3.3.0", SNAP7_SERIAL)
    assert ident.model == "CPU 315-2 PN/DP"
    assert ident.hardware_version is None  # a 26-byte record has no room for it
    assert ident.raw["as_name"] == "SNAP7-SERVER"
    assert ident.raw["copyright"] == "Original Siemens Equipment"
    partial = {entry["szl"]: entry for entry in ident.raw["partial"]}
    assert partial["0x0011"]["read"] == ["product_code", "firmware"]
    assert "26 bytes, not 28" in partial["0x0011"]["why"][0]
    assert partial["0x001C"]["read"] == ["as_name", "copyright", "module_name", "module_type_name", "serial"]
    assert any("0 records of 0 bytes, yet 206 bytes follow" in why for why in partial["0x001C"]["why"])
    # at the receiver: the two identity lists and nothing else, over one connection the probe closed
    assert asked == [0x0011, 0x001C]
    assert (codes.count(EVC_CLIENT_ADDED), codes.count(EVC_CLIENT_DISCONNECTED)) == (1, 1)
    assert observation.packets_sent == link.packets_sent == 6  # connect, CR, setup, 0x0011, 0x001C, FIN


# --- the parsers on the stock server's lists ------------------------------------------------------------------


def test_short_module_record_gives_order_code_and_firmware_noted() -> None:
    lst, missing = wire.parse_szl_list(STOCK_0011)
    assert (lst.record_length, len(lst.records), lst.notes, missing) == (26, 1, (), 0)
    module = wire.parse_module_id(lst)
    assert (module.order_code, module.hardware_version, module.firmware, module.firmware_ext) == (
        "6ES7 315-2EH14-0AB0", None, "V3.3.0", None)
    assert len(module.notes) == 1 and "bytes 23-25" in module.notes[0]


def test_zero_header_component_list_is_read_in_cpu_order() -> None:
    lst, missing = wire.parse_szl_list(STOCK_001C)
    assert missing is None  # the header counts nothing
    assert lst.record_length == 34 and len(lst.records) == 6
    assert [r[:2] for r in lst.records] == [bytes([0, i]) for i in (1, 2, 3, 4, 5, 7)]
    assert "2 trailing bytes ignored" in lst.notes[0] and "index 0x0000" in lst.notes[1]
    assert wire.parse_component_id(lst) == {
        "as_name": "SNAP7-SERVER",
        "module_name": "CPU 315-2 PN/DP",
        "copyright": "Original Siemens Equipment",
        "serial": SNAP7_SERIAL,
        "module_type_name": "CPU 315-2 PN/DP",
    }


def test_zero_header_list_in_fragments_ends_on_the_last_data_unit_flag() -> None:
    answer = wire.SzlReassembly(0x001C)
    answer.add(wire.SzlFragment(1, 7, False, STOCK_001C[:100]))
    with pytest.raises(ProtocolError, match="incomplete"):
        answer.result()
    answer.add(wire.SzlFragment(1, 7, True, STOCK_001C[100:]))
    assert wire.parse_component_id(answer.result())["serial"] == SNAP7_SERIAL


def test_lists_that_still_cannot_be_read_are_protocol_errors() -> None:
    # a zero header on a list whose record length nobody knows
    with pytest.raises(ProtocolError, match="record length 0"):
        wire.parse_szl_list(struct.pack(">HHHH", 0x0131, 0, 0, 0) + bytes(8))
    # module records too short for an order code
    with pytest.raises(ProtocolError, match="not module identification"):
        wire.parse_module_id(wire.parse_szl_list(struct.pack(">HHHH", 0x0011, 0, 20, 1) + bytes(20))[0])
    # indexes are only assigned when every record lacks one: a list with real indexes keeps them
    mixed = struct.pack(">HHHH", 0x001C, 0, 34, 2) + struct.pack(">H32s", 0, b"A") + struct.pack(">H32s", 5, b"SN")
    lst, _ = wire.parse_szl_list(mixed)
    assert lst.notes == () and wire.parse_component_id(lst) == {"serial": "SN"}


# --- hostile input: only ProtocolError escapes ----------------------------------------------------------------


def _only_protocol_error(parse: Callable[[], object]) -> None:
    with suppress(ProtocolError):
        parse()


def _zero_header(szl_id: int) -> st.SearchStrategy[bytes]:
    """A list header announcing no record length or no count, then anything."""
    return st.builds(lambda lenthdr, count, body: struct.pack(">HHHH", szl_id, 0, lenthdr, count) + body,
                     st.sampled_from([0, 2, 26, 34]), st.sampled_from([0, 1, 6]), st.binary(max_size=400))


def _hostile(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=400),
        st.builds(lambda n: seed[:n], st.integers(0, len(seed))),  # truncated
        st.builds(lambda extra: seed + extra, st.binary(min_size=1, max_size=100)),  # longer than announced
        st.builds(lambda i, b: seed[:i] + bytes([b]) + seed[i + 1 :], st.integers(0, len(seed) - 1),
                  st.integers(0, 255)),  # one byte changed
    )


_PARSERS: dict[int, Callable[[wire.SzlList], Any]] = {
    0x0011: wire.parse_module_id,
    0x001C: wire.parse_component_id,
    0x0424: wire.parse_cpu_state,
}


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_hostile(STOCK_0011), _zero_header(0x0011)))
def test_fuzz_module_list(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_module_id(wire.parse_szl_list(data)[0]))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_hostile(STOCK_001C), _zero_header(0x001C)))
def test_fuzz_component_list(data: bytes) -> None:
    _only_protocol_error(lambda: wire.parse_component_id(wire.parse_szl_list(data)[0]))


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(_PARSERS)), st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=4),
       st.sampled_from([STOCK_0011, STOCK_001C, b""]))
def test_fuzz_reassembly_then_parse(szl_id: int, pieces: list[tuple[bool, bytes]], seed: bytes) -> None:
    answer = wire.SzlReassembly(szl_id)

    def assemble() -> None:
        answer.add(wire.SzlFragment(1, 1, not pieces, seed))
        for last, payload in pieces:
            answer.add(wire.SzlFragment(1, 1, last, payload))
        _PARSERS[szl_id](answer.result())

    _only_protocol_error(assemble)
