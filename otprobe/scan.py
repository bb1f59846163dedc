"""A whole scan as one library call: scope, window, plan, scheduler, inventory and audit, tied together.

The CLI and the demo both go through `prepare()` (no I/O: it refuses bad scopes and closed windows
before a socket exists) and then `ScanRun.run()`. `scan --resume` goes the same way with a `Resume`: the
(target, protocol) pairs its scan's resume chain still owes, and nothing else.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from otprobe.audit import AuditLog
from otprobe.contract import Probe
from otprobe.errors import ProfileError, ScanLocked, ScopeError
from otprobe.inventory.store import Store
from otprobe.leases import Leases
from otprobe.link import AuditSink
from otprobe.model import Observation, Status, Target
from otprobe.pacing.plan import Plan, plan_scan, remaining_seconds
from otprobe.pacing.scheduler import ScanResult, Scheduler
from otprobe.probes import names, probe_class
from otprobe.profile import Profile, scan_config
from otprobe.scope import Resolution, Scope
from otprobe.windows import require_window

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)$")


def parse_deadline(text: str, now: datetime) -> datetime:
    """`90s`, `30m`, `2h` from now; `HH:MM` today (tomorrow if already past), local time; or an ISO timestamp."""
    text = text.strip()
    if match := _DURATION.match(text):
        value, unit = float(match[1]), match[2]
        return now + timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hour, minute = map(int, text.split(":"))
        if hour > 23 or minute > 59:
            raise ValueError(f"{text}: not a time of day")
        local_now = now.astimezone()
        at = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return (at if at > local_now else at + timedelta(days=1)).astimezone(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: give a duration (90s, 30m, 2h), a time (06:00) or an ISO time") from None
    return (at if at.tzinfo else at.astimezone()).astimezone(UTC)


def build_probes(profile: Profile, protocols: Sequence[str] | None = None,
                 ports: Mapping[str, int] | None = None) -> list[Probe]:
    """The enabled probes with the profile's options, `--protocol` filter and `--port` overrides applied.

    Every probe gets the profile's own caution rules; those that check none (no `caution_operations`) ignore them.
    """
    wanted = set(protocols) if protocols else None
    for name in wanted or ():
        probe_class(name)
    site_cautions = [c.model_dump() for c in profile.cautions]
    probes: list[Probe] = []
    for name in names():
        options = profile.protocol_options(name)
        if wanted is not None and name not in wanted:
            continue
        if wanted is None and not options.enabled:
            continue
        if ports and name in ports:
            options = options.model_copy(update={"port": ports[name]})  # --port is checked (1-65535) by the CLI
        probes.append(probe_class(name)(options, cautions=site_cautions))
    return probes


def check_sessions_fit(profile: Profile, profile_ref: str, probes: Sequence[Probe], classes: Iterable[str]) -> None:
    """Refuse a class whose pacing makes a worst-case session longer than its own session limit.

    Such a profile would time out healthy devices (and trip their breakers) for no fault of theirs. The scheduler
    paces each device at its cap less the config's headroom, so a session takes that much longer.
    """
    config = scan_config(profile)
    budget = profile.max_packets_per_device
    for probe in probes:
        if budget is not None and probe.max_packets() > budget:
            raise ProfileError(
                f"profile {profile_ref}: max_packets_per_device: {budget} is less than one worst-case {probe.name} "
                f"session ({probe.max_packets()} packets), which could then never run; raise it or narrow the "
                f"probe's options"
            )
    for name in classes:
        limits = profile.limits(name)
        for probe in probes:
            needed = (probe.max_packets() - 1) / config.effective(limits.pps)
            if limits.max_session_s < needed:
                raise ProfileError(
                    f"profile {profile_ref}: classes.{name}.max_session_s: {limits.max_session_s:g} s is shorter than "
                    f"a worst-case {probe.name} session at {limits.pps:g} pps ({probe.max_packets()} packets, "
                    f"{needed:.1f} s); raise max_session_s or pps"
                )


@dataclass(frozen=True)
class Resume:
    """What `scan --resume` continues: the latest unfinished scan, and the protocols each target still lacks."""

    scan_id: str
    profile: str
    jobs: dict[str, list[str]]  # target -> protocols without a result across the scan's resume chain


@dataclass
class Prepared:
    """A scan that passed every check that needs no network: what would run, and its worst case."""

    profile: Profile
    profile_ref: str
    resolution: Resolution
    scope: Scope
    probes: list[Probe]
    plan: Plan
    deadline: datetime | None  # the earlier of --deadline and the window's end
    window_end: datetime | None
    ignore_window_reason: str | None = None
    resume: Resume | None = None

    @property
    def targets(self) -> list[Target]:
        return list(self.resolution.targets)


def prepare(
    profile: Profile,
    profile_ref: str,
    targets: Sequence[str],
    *,
    now: datetime,
    protocols: Sequence[str] | None = None,
    ports: Mapping[str, int] | None = None,
    deadline: datetime | None = None,
    ignore_window_reason: str | None = None,
    check_window: bool = True,
    scope_include: Sequence[str] | None = None,
    resume: Resume | None = None,
    expect_devices: int | None = None,
    expect_silent: float = 0.0,
) -> Prepared:
    """Resolve and check everything before a scan; raises ScopeError or WindowError. Opens no socket.

    With `resume`, the protocols default to those the resumed chain still owes (even one the profile now disables:
    the chain's first scan ran it), and the scan will run only the owed pairs. `expect_devices` is how many of the
    addresses the plan's expected figures assume hold a device (default: plan.DEFAULT_DENSITY of them), and
    `expect_silent` the share of the other addresses that drop everything rather than refuse."""
    if not targets:
        raise ScopeError("no targets given")
    window_end = None
    if check_window and ignore_window_reason is None:
        window_end = require_window(profile.windows, now)
    scope = profile.target_scope(scope_include)
    resolution = scope.resolve(targets)
    if resume is not None and not protocols:
        protocols = sorted({name for names in resume.jobs.values() for name in names})
    probes = build_probes(profile, protocols, ports)
    plan = plan_scan(list(resolution.targets), probes, scan_config(profile), expect_devices, expect_silent)
    check_sessions_fit(profile, profile_ref, probes, plan.classes)
    ends = [d for d in (deadline, window_end) if d is not None]
    return Prepared(profile, profile_ref, resolution, scope, probes, plan, min(ends) if ends else None, window_end,
                    ignore_window_reason, resume)


class CountingAudit:
    """Passes records to the audit log and keeps the live figures progress shows (packets, recent rate)."""

    RATE_WINDOW_S = 5.0  # the rate is over this many seconds; older grants are dropped as new ones come

    def __init__(self, inner: AuditSink | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.clock = clock
        self.packets = 0
        self._recent: deque[tuple[float, int]] = deque()

    def intent(self, *, device: str, protocol: str, operation: str, code: str, packets: int) -> int:
        self.packets += packets
        now = self.clock()
        self._recent.append((now, packets))
        # trimmed here, not only when progress reads the rate: a library caller without progress never reads it
        self._forget(now)
        if self.inner is None:
            return 0
        return self.inner.intent(device=device, protocol=protocol, operation=operation, code=code, packets=packets)

    def outcome(self, record_id: int, outcome: str, detail: str | None = None) -> None:
        if self.inner is not None:
            self.inner.outcome(record_id, outcome, detail)

    def rate(self) -> float:
        """Packets per second over the last `RATE_WINDOW_S` seconds."""
        self._forget(self.clock())
        return sum(n for _, n in self._recent) / self.RATE_WINDOW_S

    def _forget(self, now: float) -> None:
        horizon = now - self.RATE_WINDOW_S
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()


# How many addresses' worth of weight the plan's expected density keeps in the progress estimate: the first few
# addresses done say little about the rest of a block.
PRIOR_ADDRESSES = 8


@dataclass(frozen=True)
class Progress:
    addresses_done: int
    addresses: int
    devices_found: int
    jobs_done: int  # (address, probe) results so far
    jobs: int
    packets: int
    rate_pps: float  # over the last few seconds
    cap_pps: float  # the global cap
    eta_s: float  # expected seconds left


def new_scan_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:4]}"


@dataclass
class ScanOutcome:
    scan_id: str
    status: str  # complete | incomplete
    result: ScanResult
    excluded: list[Observation] = field(default_factory=list)

    @property
    def observations(self) -> list[Observation]:
        return self.excluded + self.result.observations


def _exclusive(audit_path: Path) -> int:
    """Hold `<audit log>.lock` for the scan: a second scan on the same log (and so, by default, the same
    inventory) is refused instead of doubling the load on the devices and interleaving the audit chain."""
    lock_path = audit_path.with_name(audit_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ScanLocked(f"another otprobe scan (pid {holder}) is running with {audit_path}; "
                         "wait for it, or stop it with Ctrl-C") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class ScanRun:
    """One scan in flight. `stop()` is graceful (first Ctrl-C, deadline); `stop(now=True)` is the second Ctrl-C."""

    def __init__(
        self,
        prepared: Prepared,
        store: Store,
        audit_path: Path,
        *,
        now: datetime,
        on_observation: Callable[[Observation], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        leases: Leases | None = None,
    ) -> None:
        self.prepared = prepared
        self.store = store
        self.scan_id = new_scan_id(now)
        self._lock = _exclusive(audit_path)
        try:
            self.audit_log = AuditLog(audit_path, self.scan_id)
        except BaseException:
            _release(self._lock)
            raise
        self.audit = CountingAudit(self.audit_log, clock)
        self._on_observation = on_observation
        deadline = None
        if prepared.deadline is not None:
            # from the wall clock now, not from `now`: prepare() and opening the store took time since then, and a
            # deadline counted from here would be late by that much
            deadline = clock() + (prepared.deadline - datetime.now(UTC)).total_seconds()
        jobs = None
        if prepared.resume is not None:
            owed = prepared.resume.jobs
            jobs = {t.ip: [p for p in prepared.probes if p.name in owed.get(t.ip, ())] for t in prepared.targets}
        self.scheduler = Scheduler(
            prepared.targets, prepared.probes, scan_config(prepared.profile, deadline=deadline),
            audit=self.audit, on_observation=self._record, clock=clock, in_scope=prepared.scope.allows, jobs=jobs,
            leases=leases or Leases(),  # host-wide: no other otprobe process has a device of this scan in flight
        )

    def _record(self, observation: Observation) -> None:
        log.debug("%s %s/%d: %s, %d packets%s", observation.target, observation.protocol, observation.port,
                  observation.status, observation.packets_sent, f" ({observation.error})" if observation.error else "")
        self.store.add_observation(self.scan_id, observation)
        if self._on_observation is not None:
            self._on_observation(observation)

    def progress(self) -> Progress:
        """Where the scan stands, and the expected seconds left: the pacing model over the whole scan with the shares
        of devices and of silent empty addresses seen so far (blended with the plan's until enough addresses are
        seen), less the time already spent, and never less than the model of the addresses not yet started."""
        scheduler, plan = self.scheduler, self.prepared.plan
        done, found, started = scheduler.addresses_done, scheduler.devices_found, len(scheduler.pacers)
        empty = scheduler.empty_done  # addresses judged so far: the devices found and the empty ones done
        prior = plan.expected_devices / plan.devices if plan.devices else 0.0
        live = (found + PRIOR_ADDRESSES * prior) / (found + empty + PRIOR_ADDRESSES)
        silent = (len(scheduler.absent) + PRIOR_ADDRESSES * plan.silent_share) / (empty + PRIOR_ADDRESSES)
        probes, config = self.prepared.probes, scheduler.config
        whole = remaining_seconds(scheduler.targets, probes, config, live, silent)
        unstarted = remaining_seconds(scheduler.targets[started:], probes, config, live, silent)
        return Progress(done, len(scheduler.targets), found, len(scheduler.observations), scheduler.jobs_total,
                        self.audit.packets, self.audit.rate(), config.global_pps,
                        max(whole - scheduler.elapsed_s, unstarted, 0.0))

    def _record_batch(self, observations: list[Observation]) -> None:
        """Many results known at once (the excluded addresses): one transaction, however many."""
        self.store.add_observations(self.scan_id, observations)
        if self._on_observation is not None:
            for observation in observations:
                self._on_observation(observation)

    def stop(self, now: bool = False) -> None:
        self.audit_log.event("interrupt", immediate=now)
        self.scheduler.stop(now=now)

    async def run(self) -> ScanOutcome:
        p = self.prepared
        resumes = p.resume.scan_id if p.resume is not None else None
        protocols = [probe.name for probe in p.probes]
        self.store.begin_scan(self.scan_id, p.profile_ref, p.resolution.targets.ips(), protocols=protocols,
                              resumes=resumes)
        self.audit_log.event(
            "scan_start", profile=p.profile_ref, targets=len(p.resolution.targets),
            excluded=len(p.resolution.excluded), planned_packets=p.plan.total_packets,
            deadline=p.deadline.isoformat() if p.deadline else None,
            protocols=protocols, resumes=resumes, jobs=self.scheduler.jobs_total,
        )
        log.info("scan %s: %d devices, %d excluded, protocols %s, at most %d packets, deadline %s", self.scan_id,
                 len(p.resolution.targets), len(p.resolution.excluded), ", ".join(probe.name for probe in p.probes),
                 p.plan.total_packets, p.deadline.isoformat() if p.deadline else "none")
        if p.ignore_window_reason is not None:
            log.warning("maintenance window overridden: %s", p.ignore_window_reason)
            self.audit_log.event("window_override", reason=p.ignore_window_reason)
        excluded = [
            Observation(t.ip, probe.name, probe.port, Status.EXCLUDED, error="excluded by scope.exclude",
                        device_class=t.device_class)
            for t in p.resolution.excluded for probe in p.probes
        ]
        self._record_batch(excluded)
        try:
            result = await self.scheduler.run()
        except BaseException:
            self._finish(self.scheduler.result())
            raise
        return ScanOutcome(self.scan_id, self._finish(result), result, excluded)

    def _finish(self, result: ScanResult) -> str:
        """Close the scan in the inventory and the audit log; its status, judged over its whole resume chain."""
        # every observation is in the store by now: a pair the chain still owes (from this scan or an earlier,
        # killed one) makes the scan incomplete even if every job of its own ran
        missing = self.store.missing(self.scan_id)
        status = "complete" if result.complete and not missing else "incomplete"
        plan = self.prepared.plan
        self.store.finish_scan(self.scan_id, status, list(missing), figures={
            "plan_worst_s": round(plan.worst_seconds, 3), "plan_expected_s": round(plan.expected_seconds, 3),
            "plan_packets": plan.total_packets, "plan_expected_packets": plan.expected_packets,
            "not_started": len(result.unstarted),  # addresses never started: in not_covered, without results
        })
        self.audit_log.event(
            "scan_end", status=status, packets=result.packets_sent, elapsed_s=round(result.elapsed_s, 3),
            not_covered=missing, tripped=result.tripped,
        )
        self.audit_log.close()
        _release(self._lock)
        return status


def resume_targets(store: Store) -> Resume:
    """The latest scan that did not finish, and the (target, protocol) pairs its resume chain still owes."""
    for scan in reversed(store.scans()):
        if scan.status == "complete":
            break
        if scan.status in ("incomplete", "interrupted") and (missing := store.missing(scan.id)):
            return Resume(scan.id, scan.profile, missing)
    raise ScopeError("nothing to resume: the latest scan covered all its targets")
