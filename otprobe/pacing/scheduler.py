"""The scan scheduler: which (device, probe) job runs when, and what happens when devices misbehave.

Why it is shaped this way:

* Devices run concurrently (up to `max_devices_in_flight`), but each device gets one task that runs its probes one
  after another: strictly one connection at a time per device, with no locks to get wrong.
* All pacing (buckets, connection gap, cutoff, slowdown) lives in one Pacer per device over one shared Limiter, so
  retries, sessions and probes cannot add packets behind its back: every packet goes through the Link.
* A session is bounded by `max_session_s`, counted from its connection (or datagram) grant: queueing for the first
  token is our doing, not the device's. The probe is then cancelled and its `finally` still closes (a close is
  never refused and survives a second cancellation).
* Given `leases` (otprobe.leases), a device task first takes the device's host-wide lease, waiting while another
  otprobe process holds it, and continues that process's spacing of the device; it passes the lease on when its
  last close has gone out.
* Only a timeout or a reset is retried, with exponential backoff and jitter: a device that answered, refused or
  spoke garbage has said all it will say. `breaker_failures` consecutive timeouts/resets open the device's breaker:
  it gets nothing more this scan.
* Stopping: `stop()` (deadline, first Ctrl-C) sets the cutoff, so nothing new starts and running sessions close;
  `stop(now=True)` (second Ctrl-C) also cancels running sessions, which still close. Either way every job that
  did not finish is reported ABORTED and its device listed as not covered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from otprobe.contract import Probe
from otprobe.errors import ProtocolError, ScanAborted
from otprobe.leases import Lease, Leases
from otprobe.link import AuditSink, Link
from otprobe.model import Observation, Status, Target
from otprobe.pacing.bucket import Limiter, TokenBucket
from otprobe.pacing.config import ScanConfig
from otprobe.pacing.pacer import Pacer, Slowdown

RETRYABLE = frozenset({Status.TIMEOUT, Status.RESET})


@dataclass
class ScanResult:
    observations: list[Observation]  # one per (device, probe), in completion order
    tripped: list[str]  # devices whose breaker opened
    not_covered: list[str]  # devices with a job aborted by the deadline or a stop: resume these
    complete: bool  # every job ran to a result
    packets_sent: int  # packets the links let through, all attempts
    elapsed_s: float


class Scheduler:
    """Runs every probe against every target under `config` (or, with `jobs`, the probes listed for each target's
    address; a target not listed gets every probe). Create one per scan; `await run()` once."""

    def __init__(
        self,
        targets: Sequence[Target],
        probes: Sequence[Probe],
        config: ScanConfig,
        *,
        audit: AuditSink | None = None,
        on_observation: Callable[[Observation], None] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        slowdown: Slowdown | None = None,
        in_scope: Callable[[str], bool] | None = None,
        jobs: Mapping[str, Sequence[Probe]] | None = None,
        leases: Leases | None = None,
    ) -> None:
        ips = [t.ip for t in targets]
        if len(set(ips)) != len(ips):
            raise ValueError("each target may appear only once")
        if leases is not None and clock not in (None, time.monotonic):
            raise ValueError("leases hand over CLOCK_MONOTONIC times: a scheduler with leases runs on the loop's clock")
        self.targets = list(targets)
        self.probes = list(probes)
        # a resumed scan runs only the (device, protocol) pairs its predecessors left without a result
        self.jobs = {t.ip: list(jobs[t.ip]) if jobs is not None and t.ip in jobs else list(probes) for t in targets}
        self.config = config
        self._audit = audit
        self._on_observation = on_observation
        self._in_scope = in_scope
        self._leases = leases
        self._rng = rng or random.Random(0)
        self._limiter = Limiter(clock)
        self._global = TokenBucket(config.effective(config.global_pps))
        self._class_buckets: dict[str, TokenBucket] = {}
        self.pacers = {t.ip: self._pacer(t, slowdown) for t in self.targets}
        self.observations: list[Observation] = []
        self.tripped: list[str] = []
        self.not_covered: list[str] = []
        self.packets_sent = 0
        self._started: float | None = None
        self._ended: float | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _pacer(self, target: Target, slowdown: Slowdown | None) -> Pacer:
        config = self.config
        limits = config.limits_for(target.device_class)
        shared = [self._global]
        if limits.class_pps is not None:
            key = config.class_key(target.device_class)
            if key not in self._class_buckets:
                self._class_buckets[key] = TokenBucket(config.effective(limits.class_pps))
            shared.insert(0, self._class_buckets[key])
        bucket = TokenBucket(config.effective(limits.pps), limits.burst)
        return Pacer(
            self._limiter,
            bucket,
            shared,
            connect_gap_s=limits.connect_gap_s,
            timeouts=config.timeouts,
            slowdown=slowdown,
            group=config.class_key(target.device_class),
        )

    @property
    def jobs_total(self) -> int:
        return sum(len(probes) for probes in self.jobs.values())

    async def run(self) -> ScanResult:
        self._started = self._limiter.now()
        if self.config.deadline is not None:
            self._limiter.stop(at=self.config.deadline)
        slots = asyncio.Semaphore(self.config.max_devices_in_flight)
        try:
            async with asyncio.TaskGroup() as group:
                self._tasks = [group.create_task(self._device(target, slots)) for target in self.targets]
        except ExceptionGroup as errors:
            # A device task's error (a PolicyViolation, a probe's contract error) is the scan's error: raise the first
            # as itself, so that callers catching OtprobeError see it. The group never holds a cancellation (TaskGroup
            # drops cancelled children), and a cancelled run with no such error still raises CancelledError.
            raise errors.exceptions[0] from errors
        finally:
            self._ended = self._limiter.now()
        return self.result()

    def stop(self, *, now: bool = False) -> None:
        """Graceful: start nothing new, let running sessions close. `now=True` also cancels running sessions.

        Call it on the event loop (e.g. from `loop.add_signal_handler`): first Ctrl-C `stop()`, second `stop(now=True)`.
        """
        self._stop.set()
        self._limiter.stop()
        if now:
            for task in self._tasks:
                task.cancel()

    def result(self) -> ScanResult:
        """The result so far; after a cancelled `run()` this is the partial, incomplete result."""
        end = self._ended if self._ended is not None else self._limiter.now()
        return ScanResult(
            observations=list(self.observations),
            tripped=list(self.tripped),
            not_covered=list(self.not_covered),
            complete=not self.not_covered and len(self.observations) == self.jobs_total,
            packets_sent=self.packets_sent,
            elapsed_s=end - (self._started if self._started is not None else end),
        )

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._limiter.now() >= self._limiter.cutoff

    async def _device(self, target: Target, slots: asyncio.Semaphore) -> None:
        pending = list(self.jobs[target.ip])
        pacer = self.pacers[target.ip]
        lease: Lease | None = None
        try:
            if self._leases is not None:
                # before the slot: a device another process holds must not keep this scan's other devices waiting
                lease = await self._leases.acquire(target.ip, self._stopping)
                if lease is None:
                    return
                if lease.handover is not None:
                    pacer.follow(lease.handover.last_sent, lease.handover.last_connection)
            async with slots:
                failures = 0
                while pending and not self._stopping():
                    observation, failures = await self._job(target, pending[0], failures)
                    pending.pop(0)
                    self._emit(observation)
                    if observation.status is Status.ABORTED:
                        self.not_covered.append(target.ip)
                        break
                    if failures >= self.config.breaker_failures:
                        self.tripped.append(target.ip)
                        for probe in pending:
                            self._emit(_observation(target, probe, Status.TRIPPED, "circuit breaker open"))
                        pending.clear()
        finally:
            if lease is not None:
                lease.release(pacer.last_sent, pacer.last_connection)
            # Not started, or cut short by the deadline, a stop or a cancellation.
            if pending and target.ip not in self.not_covered:
                self.not_covered.append(target.ip)
            for probe in pending:
                self._emit(_observation(target, probe, Status.ABORTED, "scan stopped before this job ran"))

    async def _job(self, target: Target, probe: Probe, failures: int) -> tuple[Observation, int]:
        """One probe against one device, with retries. Returns the observation and the consecutive failure count."""
        attempt = 0
        while True:
            observation = await self._attempt(target, probe)
            if observation.status not in RETRYABLE:
                return observation, 0
            failures += 1
            if failures >= self.config.breaker_failures or attempt >= self.config.retries:
                return observation, failures
            if not await self._backoff(attempt):
                return observation, failures
            attempt += 1

    async def _attempt(self, target: Target, probe: Probe) -> Observation:
        config = self.config
        limits = config.limits_for(target.device_class)
        pacer = self.pacers[target.ip]
        link = Link(
            probe,
            target,
            pacer=pacer,
            audit=self._audit,
            timeouts=config.timeouts,
            enabled_intrusive=config.enabled_intrusive,
            in_scope=self._in_scope,
        )
        started = self._limiter.now()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as session:
                pacer.on_session = lambda: session.reschedule(loop.time() + limits.max_session_s)
                observation = await probe.run(link, target)
        except TimeoutError:
            observation = _observation(target, probe, Status.TIMEOUT, f"no result within {limits.max_session_s} s")
        except ScanAborted as exc:
            observation = _observation(target, probe, Status.ABORTED, str(exc))
        except ConnectionRefusedError as exc:
            observation = _observation(target, probe, Status.REFUSED, str(exc))
        except ConnectionError as exc:
            observation = _observation(target, probe, Status.RESET, str(exc))
        except ProtocolError as exc:
            observation = _observation(target, probe, Status.PROTOCOL_ERROR, str(exc))
        finally:
            pacer.on_session = None
            self.packets_sent += link.packets_sent
        observation.packets_sent = link.packets_sent
        observation.device_class = target.device_class
        if observation.latency_s is None:
            observation.latency_s = self._limiter.now() - started
        return observation

    async def _backoff(self, attempt: int) -> bool:
        """Wait before retry `attempt + 1`; False if the scan stops (or will have stopped) first."""
        delay = self.config.backoff_s * 2**attempt * (1 + self.config.jitter * self._rng.random())
        if self._limiter.now() + delay >= self._limiter.cutoff:
            return False
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            return not self._stopping()
        return False

    def _emit(self, observation: Observation) -> None:
        self.observations.append(observation)
        if self._on_observation is not None:
            self._on_observation(observation)


def _observation(target: Target, probe: Probe, status: Status, error: str) -> Observation:
    return Observation(
        target=target.ip,
        protocol=probe.name,
        port=probe.port,
        status=status,
        error=error,
        device_class=target.device_class,
    )
