"""The live packet count and rate a scan keeps for its progress line: right, and bounded in memory when nobody reads
the rate (a library caller without progress), on a fake clock."""

from __future__ import annotations

from otprobe.scan import CountingAudit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def grant(audit: CountingAudit, packets: int = 1) -> None:
    audit.intent(device="127.0.0.1", protocol="modbus", operation="connect", code="tcp:connect", packets=packets)


def test_the_rate_is_over_the_last_window_and_unread_grants_do_not_pile_up() -> None:
    clock = Clock()
    audit = CountingAudit(None, clock)
    for tick in range(100 * 100):  # 100 s at 100 grants per second, the rate never read
        clock.now = tick / 100
        grant(audit)
    assert audit.packets == 10_000
    window = int(CountingAudit.RATE_WINDOW_S * 100)
    assert len(audit._recent) <= window + 1  # what the window holds, not all 10,000
    assert abs(audit.rate() - 100.0) <= 1 / CountingAudit.RATE_WINDOW_S + 1e-9  # one grant at the edge, at most
    clock.now += 2 * CountingAudit.RATE_WINDOW_S
    assert audit.rate() == 0.0 and audit.packets == 10_000  # a quiet spell: no rate, the count stays


def test_a_grant_of_several_packets_counts_them_all() -> None:
    clock = Clock()
    audit = CountingAudit(None, clock)
    grant(audit, 3)
    grant(audit, 2)
    assert audit.packets == 5
    assert audit.rate() == 5 / CountingAudit.RATE_WINDOW_S
