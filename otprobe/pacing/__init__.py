"""Pacing core: token buckets per device, per class and global; the per-device pacer; the scheduler; the plan."""

from otprobe.pacing.bucket import Limiter, TokenBucket
from otprobe.pacing.config import ClassLimits, ScanConfig
from otprobe.pacing.pacer import Pacer, Slowdown
from otprobe.pacing.plan import ClassPlan, Plan, plan_scan
from otprobe.pacing.scheduler import ScanResult, Scheduler

__all__ = [
    "ClassLimits",
    "ClassPlan",
    "Limiter",
    "Pacer",
    "Plan",
    "ScanConfig",
    "ScanResult",
    "Scheduler",
    "Slowdown",
    "TokenBucket",
    "plan_scan",
]
