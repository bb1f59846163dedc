"""The probe contract: everything a protocol probe declares, and all it may call on the link the core hands it.

This is the bottom of otprobe: at run time it imports nothing else of otprobe, so the link, the pacing core, the
registry and every probe (built-in or installed by another package) can import it without pulling in anything.
(The type checker alone reads `otprobe.model`, plain data with no import of its own, for `run`'s signature.)

A probe is a class with class-level facts and one coroutine, `run(link, target)`:

- `name`, `transports`, `default_port`, `operations` (each with its packet cost), `max_packets()` (its
  worst case with these options: the budget the link enforces) and `typical_packets()` (what a device that answers
  usually costs: the plan's expected figures, never a limit);
- `wire_protocol`: whose wire codes its operations are, the key into the central allowlist (otprobe.safety); a
  second probe speaking an existing probe's protocol names that protocol and may send only what it may;
- `Options`: its section of a profile (`protocols.<name>:`), a pydantic model with a default for every key;
- `merge_rank` and `field_ranks`: how far its identity fields are trusted when protocols disagree;
- `caution_operations`: the operations it checks against caution rules before sending them.

It never opens a socket on its own authority: every packet is announced to the link (`ProbeLink.op`), which
checks the allowlist, the declaration and the budget, waits for pacing and writes the audit record first.
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict

if TYPE_CHECKING:
    from otprobe.model import Observation, Target


class Category(StrEnum):
    """nmap's contract, enforced: safe runs by default; intrusive only when a profile enables it with a reason."""

    SAFE = "safe"
    INTRUSIVE = "intrusive"


class Kind(StrEnum):
    """What an operation does to the device's resources; the scheduler treats connects and closes specially."""

    CONNECT = "connect"  # opens a TCP connection (takes a connection slot on the device)
    REQUEST = "request"  # one request segment on an open connection
    CLOSE = "close"  # ends a connection; always allowed, even after the deadline
    DATAGRAM = "datagram"  # one UDP datagram


@dataclass(frozen=True)
class Operation:
    """One thing a probe may put on the wire."""

    name: str  # probe-local name, e.g. "read_device_id"
    code: str  # wire code, the key into otprobe.safety, e.g. "fc:0x2B/mei:0x0E"
    kind: Kind = Kind.REQUEST
    packets: int = 1  # packets the device must handle each time it is sent
    category: Category = Category.SAFE
    description: str = ""


# How long a connect waits for the device's SYN-ACK, at most. Linux sends an unanswered SYN again after its initial
# retransmission timeout of 1 s, on its own timer, outside any pacing: a connect that waited longer would let a
# device that drops the first SYN receive a second one 1 s later, over a cap below 1 pps and inside the connection
# gap. A connect given up before that closes its socket, and closing a socket still in SYN_SENT sends nothing, so a
# second SYN is only ever otprobe's own retry, paced and counted. (TCP_USER_TIMEOUT does not help: measured on Linux
# 6.18, the kernel still retransmits the SYN at 1 s and only then reports the timeout.) The 0.3 s to spare cover a
# timer that fires late on a busy machine. `scan_config` caps a profile's `connect_s` to this.
SYN_WAIT_S = 0.7


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = SYN_WAIT_S
    response_s: float = 3.0


class ProbeLink(Protocol):
    """What a probe may use of the link it runs on (otprobe.link.Link is the real one)."""

    timeouts: Timeouts
    packets_sent: int

    def op(self, name: str) -> AbstractAsyncContextManager[Operation]:
        """Announce, pace and audit one declared operation; the body sends it, with no await before the send."""
        ...

    def connection_ended(self) -> None:
        """The device closed or reset the connection first: no close of ours is announced or sent."""
        ...


# --- option types shared by every probe's Options and by the profile ---------------------------------------------


def _number(value: object) -> object:
    # YAML reads true, yes and on as booleans, and pydantic would take a boolean as 1: never as a rate or a count
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not a boolean (got {str(value).lower()})")
    return value


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError("enabling an intrusive operation needs a written reason")
    return value.strip()


Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]
Flag = Annotated[bool, Strict()]  # and a number is no boolean: `enabled: 1` is refused, not read as true
Port = Annotated[Int, Field(ge=1, le=65_535)]


class ProbeOptions(BaseModel):
    """A probe's profile section. Subclasses add their keys, each with a default, and set `port`'s default."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: Flag = True
    port: Port = 1
    # operation name -> the written reason it is enabled; intrusive operations not named here are never sent.
    intrusive: dict[str, Annotated[str, AfterValidator(_reason)]] = {}


class Probe(ABC):
    """Base of every protocol probe. Subclasses fill in the class variables, `max_packets` and `run`."""

    name: ClassVar[str]
    transports: ClassVar[tuple[str, ...]]  # ("tcp",), ("udp",) or both, in the order the probe uses them
    default_port: ClassVar[int]
    operations: ClassVar[tuple[Operation, ...]]
    Options: ClassVar[type[ProbeOptions]] = ProbeOptions
    # Merge ranks: where protocols disagree about an identity field, the highest rank's value is kept (the others
    # are recorded as conflicts). `field_ranks` overrides `merge_rank` for single fields.
    merge_rank: ClassVar[int] = 0
    field_ranks: ClassVar[Mapping[str, int]] = {}
    caution_operations: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def wire_protocol(cls) -> str:
        """Whose wire codes `operations` are: the allowlist's key. A probe's own name unless it says otherwise."""
        return cls.name

    def __init__(self, options: ProbeOptions | Mapping[str, Any] | None = None, *,
                 cautions: Sequence[Mapping[str, str]] = ()) -> None:
        """`options` is validated against `Options` (a pydantic ValidationError names the bad key); `cautions` are
        the profile's own caution rules, read by probes that declare `caution_operations`."""
        self.options = options if isinstance(options, self.Options) else self.Options.model_validate(options or {})
        for name in self.options.intrusive:
            if problem := self.intrusive_problem(name):
                raise ValueError(f"{self.name}.intrusive.{name}: {problem}")
        self.site_cautions = tuple(cautions)

    @property
    def port(self) -> int:
        return self.options.port

    @classmethod
    def operation(cls, name: str) -> Operation:
        for op in cls.operations:
            if op.name == name:
                return op
        raise KeyError(name)

    @classmethod
    def intrusive_problem(cls, name: str) -> str | None:
        """Why `name` cannot be enabled as one of this probe's intrusive operations, or None if it can."""
        intrusive = sorted(op.name for op in cls.operations if op.category is Category.INTRUSIVE)
        known = f"its intrusive operations: {', '.join(intrusive)}" if intrusive else "it has no intrusive operation"
        try:
            op = cls.operation(name)
        except KeyError:
            close = difflib.get_close_matches(name, intrusive, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"not an operation of the {cls.name} probe ({known}){hint}"
        if op.category is not Category.INTRUSIVE:
            return f"{name!r} is a safe operation, always sent; only intrusive operations are enabled here ({known})"
        return None

    @classmethod
    def rank(cls, field: str) -> int:
        return cls.field_ranks.get(field, cls.merge_rank)

    @abstractmethod
    def max_packets(self) -> int:
        """Worst-case packets one run of this probe sends to one device with these options (the budget)."""

    def typical_packets(self) -> int:
        """Packets one run usually sends to a device that answers, with these options: what the plan expects, never
        a limit. Probes state their usual exchange; a probe that does not is assumed to need half its worst case."""
        return math.ceil(self.max_packets() / 2)

    @abstractmethod
    async def run(self, link: ProbeLink, target: Target) -> Observation:
        """Identify one device. Must close every connection it opened, on every path."""

