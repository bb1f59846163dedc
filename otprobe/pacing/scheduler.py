"""The scan scheduler: which (device, probe) job runs when, and what happens when devices misbehave or are absent.

Why it is shaped this way:

* Each address gets one task that runs its probes one after another: strictly one connection at a time per
  device, with no locks to get wrong. Tasks are started as slots free up, not all at once, so a /16 costs memory
  for the addresses in flight, not for every address.
* Two kinds of slot. An address not yet known to hold a device runs under one of `max_addresses_in_flight`
  discovery slots; once a service answers (a connection accepted, a reply), the address holds a device and its
  remaining probes wait for one of `max_devices_in_flight` session slots. Empty addresses, which mostly wait for
  timeouts or send one refused SYN per protocol, therefore never hold back the devices' sessions, and the devices'
  sessions never hold back the sweep of the empty addresses. Per-device pacing (pps, connection gap) holds for
  every address either way: it lives in the address's Pacer, not in the slots.
* An address whose first connection attempt (with its retries) gets no answer at all is treated as absent: no
  other TCP probe is tried. Probes that speak only UDP still get one datagram each (no retry), because a building
  controller or a switch may filter TCP and answer UDP; if one answers, the host is proven alive and the skipped
  TCP probes run after all. A refusal (RST, ICMP port unreachable) proves the host is up and that port closed:
  it is final for that probe (never retried) and the other probes are still tried. An unreachable host (no ARP
  reply, ICMP host or network unreachable: `link.UNREACHABLE`) is no answer, recorded as a timeout: on a local
  segment, that is how most empty addresses show.
* All pacing (buckets, connection gap, cutoff, slowdown) lives in one Pacer per device over one shared Limiter, so
  retries, sessions and probes cannot add packets behind its back: every packet goes through the Link.
* A device packet budget (`max_packets_per_device`), when set, bounds everything one scan sends one address,
  retries included: an attempt starts only if the probe's whole worst case fits in what is left, so no Link ever
  runs out mid-session and every connection still closes. A job that does not fit is TRIPPED and says so.
* A session is bounded by `max_session_s`, counted from its connection (or datagram) grant: queueing for the first
  token is our doing, not the device's. The probe is then cancelled and its `finally` still closes (a close is
  never refused and survives a second cancellation).
* Given `leases` (otprobe.leases), a device task first takes the device's host-wide lease, waiting while another
  otprobe process holds it, and continues that process's spacing of the device; it passes the lease on when its
  last close has gone out.
* Only a timeout or a reset is retried, with exponential backoff and jitter: a device that answered, refused or
  spoke garbage has said all it will say. `breaker_failures` consecutive timeouts/resets of a device that answered
  before open its breaker: it gets nothing more this scan.
* Stopping: `stop()` (deadline, first Ctrl-C) sets the cutoff, so nothing new starts and running sessions close;
  `stop(now=True)` (second Ctrl-C) also cancels running sessions, which still close. Either way every job that
  did not finish is reported ABORTED and its device listed as not covered. An address never started gets no
  per-probe result at all: it is listed once, in `unstarted` and in `not_covered` (a /16 stopped at its deadline
  would otherwise make hundreds of thousands of identical ABORTED results, each held in memory and written).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from otprobe.contract import Kind, Probe
from otprobe.errors import ProtocolError, ScanAborted
from otprobe.leases import Lease, Leases
from otprobe.link import AuditSink, Link
from otprobe.model import Observation, Status, Target
from otprobe.pacing.bucket import Limiter, TokenBucket
from otprobe.pacing.config import ScanConfig
from otprobe.pacing.pacer import Pacer, Slowdown

RETRYABLE = frozenset({Status.TIMEOUT, Status.RESET})
# A service spoke: the address holds a device. REFUSED only proves the host is up (that port is closed).
ANSWERED = frozenset({Status.IDENTIFIED, Status.NO_IDENTITY, Status.PROTOCOL_ERROR, Status.RESET})
ABSENT_NOTE = "host absent: its first connection attempt got no answer, so nothing more is sent to it"


@dataclass
class ScanResult:
    observations: list[Observation]  # one per (device, probe), in completion order
    tripped: list[str]  # devices whose breaker opened
    not_covered: list[str]  # devices with a job aborted by the deadline or a stop: resume these
    complete: bool  # every job ran to a result
    packets_sent: int  # packets the links let through, all attempts
    elapsed_s: float
    absent: list[str] = field(default_factory=list)  # addresses that never answered (no device there)
    unstarted: list[str] = field(default_factory=list)  # never started (a stop or the deadline came first): no results


class _DevicePacer(Pacer):
    """The Pacer, also noting whether the device accepted a connection: proof that it holds a device."""

    accepted = False

    def observe(self, kind: Kind, seconds: float) -> None:
        if kind is Kind.CONNECT:
            self.accepted = True
        super().observe(kind, seconds)


@dataclass
class _Address:
    """What one address's task has learnt so far."""

    target: Target
    pending: list[Probe]
    pacer: _DevicePacer
    spent: int = 0  # packets sent to it this scan
    failures: int = 0  # consecutive timeouts/resets (the breaker)
    alive: bool = False  # something answered or refused
    absent: bool = False  # the first connection attempt, retries included, got no answer
    found: bool = False  # a service answered: counted in devices_found

    @property
    def holds_device(self) -> bool:
        return self.pacer.accepted


class _Slot:
    """The slot an address's task holds: a discovery slot first, a session slot once it holds a device."""

    def __init__(self, held: asyncio.Semaphore) -> None:
        self.held: asyncio.Semaphore | None = held

    async def move_to(self, other: asyncio.Semaphore) -> None:
        if self.held is other:
            return
        self.release()
        await other.acquire()
        self.held = other

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
            self.held = None


class Scheduler:
    """Runs every probe against every target under `config` (or, with `jobs`, the probes listed for each target's
    address; a target not listed gets every probe). Create one per scan; `await run()` once. `on_observation` gets
    each result as it completes."""

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
        self._jobs = jobs
        self.config = config
        self._audit = audit
        self._on_observation = on_observation
        self._in_scope = in_scope
        self._leases = leases
        self._slowdown = slowdown
        self._rng = rng or random.Random(0)
        self._limiter = Limiter(clock)
        self._global = TokenBucket(config.effective(config.global_pps))
        self._class_buckets: dict[str, TokenBucket] = {}
        self.pacers: dict[str, Pacer] = {}  # per address, made when its task starts
        self.observations: list[Observation] = []
        self.tripped: list[str] = []
        self.not_covered: list[str] = []
        self.absent: list[str] = []
        self.unstarted: list[str] = []
        self.packets_sent = 0
        self.addresses_done = 0  # addresses with every job reported (progress)
        self.devices_found = 0  # addresses that proved to hold a device (progress: the density seen so far)
        self.empty_done = 0  # addresses done that never proved to hold one
        self.jobs_total = sum(len(self.jobs_for(t)) for t in self.targets)
        self._started: float | None = None
        self._ended: float | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def jobs_for(self, target: Target) -> list[Probe]:
        """The probes `target` gets, the first TCP probe first: its connection attempt tells whether the host is
        there at all (a UDP probe's silence says only that one service is not)."""
        probes = list(self._jobs[target.ip]) if self._jobs is not None and target.ip in self._jobs else self.probes
        first = next((p for p in probes if "tcp" in p.transports), None)
        return probes if first is None else [first, *(p for p in probes if p is not first)]

    def _pacer(self, target: Target) -> _DevicePacer:
        config = self.config
        limits = config.limits_for(target.device_class)
        shared = [self._global]
        if limits.class_pps is not None:
            key = config.class_key(target.device_class)
            if key not in self._class_buckets:
                self._class_buckets[key] = TokenBucket(config.effective(limits.class_pps))
            shared.insert(0, self._class_buckets[key])
        bucket = TokenBucket(config.effective(limits.pps), limits.burst)
        return _DevicePacer(
            self._limiter,
            bucket,
            shared,
            connect_gap_s=limits.connect_gap_s,
            timeouts=config.timeouts,
            slowdown=self._slowdown,
            group=config.class_key(target.device_class),
        )

    async def run(self) -> ScanResult:
        self._started = self._limiter.now()
        if self.config.deadline is not None:
            self._limiter.stop(at=self.config.deadline)
        # never fewer discovery slots than session slots: a scan of devices that each answer one probe runs that
        # whole session in its discovery slot, and must not run fewer at once than the profile allows devices
        discovery = asyncio.Semaphore(max(self.config.max_addresses_in_flight, self.config.max_devices_in_flight))
        sessions = asyncio.Semaphore(self.config.max_devices_in_flight)
        started = 0  # targets[:started] have a task
        try:
            async with asyncio.TaskGroup() as group:
                while started < len(self.targets):
                    await discovery.acquire()
                    if not self._can_start():
                        discovery.release()
                        break
                    task = group.create_task(self._device(self.targets[started], _Slot(discovery), sessions))
                    started += 1
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except ExceptionGroup as errors:
            # A device task's error (a PolicyViolation, a probe's contract error) is the scan's error: raise the first
            # as itself, so that callers catching OtprobeError see it. The group never holds a cancellation (TaskGroup
            # drops cancelled children), and a cancelled run with no such error still raises CancelledError.
            raise errors.exceptions[0] from errors
        finally:
            self._abort_unstarted(self.targets[started:])
            self._ended = self._limiter.now()
        return self.result()

    def stop(self, *, now: bool = False) -> None:
        """Graceful: start nothing new, let running sessions close. `now=True` also cancels running sessions.

        Call it on the event loop (e.g. from `loop.add_signal_handler`): first Ctrl-C `stop()`, second `stop(now=True)`.
        """
        self._stop.set()
        self._limiter.stop()
        if now:
            for task in list(self._tasks):
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
            absent=list(self.absent),
            unstarted=list(self.unstarted),
        )

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else self._limiter.now() - self._started

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._limiter.now() >= self._limiter.cutoff

    def _can_start(self) -> bool:
        """Whether a new address could still get its first connection and its reply in before the cutoff: after
        that, starting one would only have the limiter refuse it, one address after another."""
        timeouts = self.config.timeouts
        return not self._stop.is_set() and (
            self._limiter.now() + max(timeouts.connect_s, timeouts.response_s) < self._limiter.cutoff
        )

    def _abort_unstarted(self, targets: list[Target]) -> None:
        ips = [t.ip for t in targets]
        self.unstarted += ips
        self.not_covered += ips
        self.addresses_done += len(ips)

    async def _device(self, target: Target, slot: _Slot, sessions: asyncio.Semaphore) -> None:
        pacer = self._pacer(target)
        self.pacers[target.ip] = pacer
        address = _Address(target, self.jobs_for(target), pacer)
        lease: Lease | None = None
        try:
            if self._leases is not None:
                lease = await self._leases.acquire(target.ip, self._stopping)
                if lease is None:
                    return
                if lease.handover is not None:
                    pacer.follow(lease.handover.last_sent, lease.handover.last_connection)
            first = True
            while address.pending and not self._stopping():
                if address.holds_device:
                    await slot.move_to(sessions)
                probe = address.pending[0]
                if address.absent and "tcp" in probe.transports:
                    address.pending.pop(0)
                    self._emit(_observation(target, probe, Status.TRIPPED, ABSENT_NOTE))
                    continue
                observation = await self._job(address, probe, retries=0 if address.absent else None)
                address.pending.pop(0)
                self._emit(observation)
                if observation.status is Status.ABORTED:
                    self.not_covered.append(target.ip)
                    break
                if not address.found and (observation.status in ANSWERED or address.holds_device):
                    address.found = True
                    self.devices_found += 1
                address.alive |= observation.status in ANSWERED or observation.status is Status.REFUSED
                if address.alive or address.holds_device:
                    address.absent = False
                elif first and "tcp" in probe.transports:
                    # nothing listened or refused: try what speaks only UDP before giving up on the host
                    address.absent = True
                    address.pending.sort(key=lambda p: "tcp" in p.transports)
                first = False
                if not address.absent and address.failures >= self.config.breaker_failures:
                    self.tripped.append(target.ip)
                    for probe in address.pending:
                        self._emit(_observation(target, probe, Status.TRIPPED, "circuit breaker open"))
                    address.pending.clear()
            if address.absent and not address.pending:
                self.absent.append(target.ip)
        finally:
            slot.release()
            if lease is not None:
                lease.release(pacer.last_sent, pacer.last_connection)
            # Not started, or cut short by the deadline, a stop or a cancellation.
            if address.pending and target.ip not in self.not_covered:
                self.not_covered.append(target.ip)
            for probe in address.pending:
                self._emit(_observation(target, probe, Status.ABORTED, "scan stopped before this job ran"))
            self.addresses_done += 1
            self.empty_done += not address.found

    def _fits(self, address: _Address, probe: Probe) -> bool:
        budget = self.config.max_packets_per_device
        return budget is None or address.spent + probe.max_packets() <= budget

    async def _job(self, address: _Address, probe: Probe, retries: int | None = None) -> Observation:
        """One probe against one device, with retries (`retries`, else the config's). Updates the breaker count."""
        target = address.target
        retries = self.config.retries if retries is None else retries
        attempt = sent = 0
        while True:
            if not self._fits(address, probe):
                budget = self.config.max_packets_per_device
                note = f"this device's packet budget ({budget} per scan) has no room for this probe"
                observation = _observation(target, probe, Status.TRIPPED, note)
                observation.packets_sent = sent
                return observation
            observation = await self._attempt(target, probe)
            address.spent += observation.packets_sent
            sent += observation.packets_sent
            observation.packets_sent = sent  # the result carries what every attempt sent, not the last one's
            if observation.status not in RETRYABLE:
                address.failures = 0
                return observation
            address.failures += 1
            if address.failures >= self.config.breaker_failures or attempt >= retries:
                return observation
            if not await self._backoff(attempt):
                return observation
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
        if link.unreachable and observation.status is Status.REFUSED:
            # The probe saw a failed connect or send; the link saw why: nobody answered, which is not a refusal.
            observation = _observation(target, probe, Status.TIMEOUT, f"host unreachable: {observation.error}")
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
