"""An address whose connects fail with "no route to host" (no ARP reply: how most empty addresses on a local segment
show) is absent, as one that drops SYNs is, not alive as one that refuses: the real TCP probes are tried once each
way, none is recorded as refused, and after the first attempt no other TCP probe is tried.

The kernel's neighbour discovery cannot fail on loopback, so the event loop's socket connect is made to fail the
way it does then, for one address (127.0.61.1) only; the others connect for real.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from dataclasses import replace

import pytest

from otprobe.model import Status, Target
from otprobe.pacing import ClassLimits, Scheduler
from otprobe.pacing.scheduler import ABSENT_NOTE
from otprobe.profile import load_profile, scan_config
from otprobe.scan import build_probes

UNREACHABLE_IP = "127.0.61.1"
FAST = ClassLimits(pps=20.0, burst=1, class_pps=None, connect_gap_s=0.0, max_session_s=5.0)


@pytest.fixture
def no_route_to(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    tried: list[tuple[str, int]] = []
    real = asyncio.selector_events.BaseSelectorEventLoop.sock_connect

    async def sock_connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: tuple[str, int]) -> None:
        if address[0] == UNREACHABLE_IP:
            tried.append(address)
            raise OSError(errno.EHOSTUNREACH, os.strerror(errno.EHOSTUNREACH))
        await real(loop, sock, address)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)
    return tried


async def test_no_route_to_host_is_an_absent_host_not_a_refusing_one(no_route_to: list[tuple[str, int]]) -> None:
    profile = load_profile("lab")
    probes = [p for p in build_probes(profile) if p.name in ("modbus", "s7", "enip") and "udp" not in p.transports]
    assert len(probes) >= 2, [p.name for p in probes]
    config = replace(scan_config(profile), classes={"unknown": FAST}, retries=1, backoff_s=0.01)
    result = await Scheduler([Target(UNREACHABLE_IP)], probes, config).run()

    assert result.absent == [UNREACHABLE_IP]
    statuses = [o.status for o in result.observations]
    assert Status.REFUSED not in statuses
    first, *rest = result.observations
    assert first.status is Status.TIMEOUT and "host unreachable" in (first.error or "")
    assert rest and all(o.status is Status.TRIPPED and o.error == ABSENT_NOTE for o in rest)
    # the first probe's connect and its one retry; no other probe connected
    assert len(no_route_to) == 2 and {port for _, port in no_route_to} == {first.port}
