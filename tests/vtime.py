"""Virtual time for asyncio tests (aiolimiter/looptime style): sleeps and timeouts cost no wall time.

The loop's clock only moves when the loop would otherwise block: it jumps straight to the next timer. Socket
readiness is still polled for real (with timeout 0), so only use it for code that waits on timers, not on I/O.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

START = 1000.0  # far from 0, so that "never" (-inf) and the first grant are clearly apart


class _Selector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("virtual loop deadlocked: nothing is scheduled and nothing is ready")
        self._vloop.advance(timeout)
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = START
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        # Land exactly on the next timer: float subtraction and re-addition may fall one ulp short of it.
        scheduled = self._scheduled  # the loop's timer heap
        if scheduled and scheduled[0].when() > self._now:
            self._now = scheduled[0].when()


def run(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
