"""The window arithmetic behind the report's safety figures, on hand-made send times."""

from __future__ import annotations

from otprobe.report.evidence import Sends, window_cap


def test_the_busiest_window_is_half_open() -> None:
    sends = Sends([(0.0, 1), (0.5, 1), (1.0, 1), (1.2, 1)])
    assert sends.busiest() == 3  # [0.5, 1.5) holds 0.5, 1.0 and 1.2; [0, 1) only two
    assert Sends([(0.0, 1), (1.0, 1), (2.0, 1)]).busiest() == 1
    assert Sends().busiest() == 0


def test_a_send_of_several_packets_counts_them_all() -> None:
    sends = Sends([(0.0, 2), (0.9, 3), (2.0, 1)])
    assert (sends.packets, sends.busiest()) == (6, 5)


def test_the_trailing_curve_rises_at_each_send_and_falls_a_window_later() -> None:
    curve = Sends([(0.0, 1), (0.5, 2)]).trailing()
    assert curve == [(0.0, 0), (0.0, 1), (0.5, 3), (1.0, 2), (1.5, 0)]
    # at one instant a packet leaving the window goes before one entering it: the curve never overstates
    assert max(n for _, n in Sends([(0.0, 1), (1.0, 1)]).trailing()) == 1


def test_the_cap_of_a_window_follows_rate_and_burst() -> None:
    assert window_cap(5) == 5 and window_cap(0.5) == 1 and window_cap(2.5, 2) == 4
    assert window_cap(0.5, window_s=10) == 5
