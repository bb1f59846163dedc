"""Targets and scope: what the user asked for, what the profile allows, and what is refused before any packet.

Targets are IPv4 hosts (`127.0.1.5`), CIDR blocks (`127.0.1.0/24`: network and broadcast addresses skipped below
/31), ranges (`127.0.1.1-127.0.1.20` or `127.0.1.1-20`) and files of targets (`@targets.txt`, or a plain path),
one per line with `#` comments. Hostnames are refused: otprobe does no DNS at all. The broadcast address,
multicast (224.0.0.0/4), 0.0.0.0/8 and link-local (169.254.0.0/16) are refused wherever they appear, and so are
the network and broadcast addresses of every `include` network below /31 when a host or range names them.

A target that cannot be parsed or read is a usage error (TargetError); a well-formed target that may not be
probed is a refusal (ScopeError). A target file must be a regular file of at most 1 MiB (room for every address a
scan may resolve, one per line, with comments); a FIFO, a device or a directory is refused without reading it.
Messages quote at most the first few dozen characters of a target or a file's line: a file given by mistake (or
a symlink to one) may hold secrets, and an error line must not print them.

Resolution keeps everything as integer intervals, so planning a /16 costs a few intervals, not 65,534 objects;
`TargetSet` yields `Target`s lazily. Exclusion always wins: an excluded address is reported, never probed, and is
not checked against `include`. Every other address must lie inside `include`, or the whole request is refused
with a ScopeError naming the target; an empty `include` refuses everything.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv4Network
from pathlib import Path

from otprobe import userfile
from otprobe.errors import ScopeError, TargetError
from otprobe.model import Target

# One resolution may hold at most a /16 worth of addresses (targets plus excluded): a bigger scan is split.
MAX_TARGETS = 65_536

_REFUSED = (
    (IPv4Network("0.0.0.0/8"), "'this network' 0.0.0.0/8"),
    (IPv4Network("169.254.0.0/16"), "link-local 169.254.0.0/16"),
    (IPv4Network("224.0.0.0/4"), "multicast 224.0.0.0/4"),
    (IPv4Network("255.255.255.255/32"), "the broadcast address"),
)
_ADDRESS_CHARS = frozenset("0123456789./-")
_LONGEST = len("255.255.255.255-255.255.255.255")
TARGET_FILE_LIMIT = 1 << 20
_SHOWN = 32  # characters of a target or a file's line quoted in a message


def _shown(text: str) -> str:
    """`text` cut to a few dozen characters for an error message."""
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


@dataclass(frozen=True)
class TargetRange:
    """An inclusive interval of IPv4 addresses as integers, and where the user wrote it."""

    first: int
    last: int
    origin: str

    def __len__(self) -> int:
        return self.last - self.first + 1


def _address(text: str, spec: str) -> int:
    try:
        return int(IPv4Address(text))
    except AddressValueError as exc:
        raise TargetError(f"invalid target {spec!r}: {exc}") from None


def _interval(spec: str) -> tuple[int, int]:
    if "/" in spec:
        try:
            net = IPv4Network(spec)
        except ValueError as exc:  # includes "has host bits set"
            raise TargetError(f"invalid target {spec!r}: {exc}") from None
        first, last = int(net.network_address), int(net.broadcast_address)
        return (first + 1, last - 1) if net.prefixlen < 31 else (first, last)
    if "-" in spec:
        left, right = spec.split("-", 1)
        first = _address(left, spec)
        if right.isdigit():
            if int(right) > 255:
                raise TargetError(f"invalid target {spec!r}: last octet {right} is above 255")
            last = (first & 0xFFFFFF00) | int(right)
        else:
            last = _address(right, spec)
        if last < first:
            raise TargetError(f"invalid target {spec!r}: the range ends before it starts")
        return first, last
    address = _address(spec, spec)
    return address, address


def _refuse_special(first: int, last: int, origin: str) -> None:
    for net, what in _REFUSED:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if first <= hi and lo <= last:
            hit = IPv4Address(max(first, lo))
            raise ScopeError(f"target {origin!r} includes {hit}, in {what}: refused")


def parse_target(spec: str, origin: str | None = None) -> TargetRange:
    """One host, CIDR block or range (not a file). Raises TargetError if it cannot be parsed, ScopeError if it
    names an address that is never probed."""
    text = spec.strip()
    where = origin or _shown(text)
    if not text:
        raise TargetError(f"empty target in {where}")
    if ":" in text:
        raise TargetError(f"target {where!r}: IPv6 is not supported; give IPv4 addresses")
    if not set(text) <= _ADDRESS_CHARS:
        raise TargetError(
            f"target {where!r} is not an IPv4 address, block, range or file; hostnames are refused "
            "because otprobe does no DNS: give the address"
        )
    if len(text) > _LONGEST:  # beyond this it cannot be an address, and the parser would quote all of it
        raise TargetError(f"target {where!r} is too long to be an IPv4 address, block or range")
    try:
        first, last = _interval(text)
    except TargetError as exc:
        raise TargetError(str(exc) if origin is None else f"{origin}: {exc}") from None
    _refuse_special(first, last, where)
    return TargetRange(first, last, where)


def _read_file(path: Path) -> Iterator[TargetRange]:
    try:
        lines = userfile.read_text(path, TARGET_FILE_LIMIT).splitlines()
    except userfile.UserFileError as exc:
        raise TargetError(f"cannot read target file {str(path)!r}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            yield parse_target(text, origin=f"{path}:{number} {_shown(text)}")


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a name too long for the file system: then it is no file either
        return False


def parse_targets(specs: Iterable[str]) -> Iterator[TargetRange]:
    """Target ranges in the order given; `@file` or an existing file path expands to its lines."""
    for spec in specs:
        text = spec.strip()
        if text.startswith("@"):
            yield from _read_file(Path(text[1:]))
        elif not set(text) <= _ADDRESS_CHARS and _is_file(text):
            yield from _read_file(Path(text))
        else:
            yield parse_target(text)


class _IntervalSet:
    """Sorted, disjoint, merged integer intervals with split (inside / outside) queries."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.starts)

    def add(self, first: int, last: int) -> None:
        i = bisect_left(self.ends, first - 1)  # first interval that touches or follows `first`
        j = bisect_right(self.starts, last + 1)  # one past the last interval that touches `last`
        if i < j:
            first, last = min(first, self.starts[i]), max(last, self.ends[j - 1])
        self.starts[i:j] = [first]
        self.ends[i:j] = [last]

    def split(self, first: int, last: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(parts of [first, last] outside the set, parts inside it), each ascending."""
        outside: list[tuple[int, int]] = []
        inside: list[tuple[int, int]] = []
        cursor = first
        i = max(bisect_right(self.starts, first) - 1, 0)
        while i < len(self.starts) and self.starts[i] <= last and cursor <= last:
            start, end = self.starts[i], self.ends[i]
            if end >= cursor:
                if start > cursor:
                    outside.append((cursor, start - 1))
                inside.append((max(start, cursor), min(end, last)))
                cursor = end + 1
            i += 1
        if cursor <= last:
            outside.append((cursor, last))
        return outside, inside

    def __contains__(self, address: int) -> bool:
        i = bisect_right(self.starts, address) - 1
        return i >= 0 and address <= self.ends[i]


def _network(entry: str | IPv4Network) -> IPv4Network:
    try:
        return entry if isinstance(entry, IPv4Network) else IPv4Network(entry)
    except ValueError as exc:
        raise TargetError(f"invalid scope entry {_shown(str(entry))!r}: {exc}") from None


def _set_of(networks: Iterable[IPv4Network]) -> _IntervalSet:
    result = _IntervalSet()
    for net in networks:
        result.add(int(net.network_address), int(net.broadcast_address))
    return result


class TargetSet:
    """An ordered, lazily expanded set of targets with their device classes."""

    def __init__(self, spans: Sequence[tuple[int, int]], scope: Scope) -> None:
        self._spans = tuple(spans)
        self._scope = scope

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self._spans)

    def __bool__(self) -> bool:
        return bool(self._spans)

    def __iter__(self) -> Iterator[Target]:
        for first, last in self._spans:
            for address in range(first, last + 1):
                yield Target(str(IPv4Address(address)), self._scope.class_of_int(address))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, str):
            return False
        address = int(IPv4Address(ip))
        return any(first <= address <= last for first, last in self._spans)

    def ips(self) -> list[str]:
        return [target.ip for target in self]


@dataclass(frozen=True)
class Resolution:
    """What a scan will touch (`targets`) and what it will report as excluded with zero packets."""

    targets: TargetSet
    excluded: TargetSet


class Scope:
    """A profile's `scope` and `assign` sections, ready to resolve targets and to re-check single addresses."""

    def __init__(
        self,
        include: Iterable[str | IPv4Network],
        exclude: Iterable[str | IPv4Network] = (),
        assign: Iterable[tuple[str | IPv4Network, str]] = (),
    ) -> None:
        # assign: (cidr, class) pairs, first match wins, else "unknown"
        self.include = [_network(entry) for entry in include]
        self.exclude = [_network(entry) for entry in exclude]
        self._include = _set_of(self.include)
        self._exclude = _set_of(self.exclude)
        self._assign = [
            (int(net.network_address), int(net.broadcast_address), device_class)
            for net, device_class in ((_network(entry), device_class) for entry, device_class in assign)
        ]
        # A directed broadcast reaches every device on its subnet, and old stacks treat the network address as one
        # too: neither may be probed, even when a host or range names it (CIDR expansion already skips them).
        edges: dict[int, str] = {}
        for net in self.include:
            if net.prefixlen < 31:
                edges.setdefault(int(net.network_address), f"the network address of scope.include {net}")
                edges.setdefault(int(net.broadcast_address), f"the broadcast address of scope.include {net}")
        self._edges = dict(sorted(edges.items()))
        self._edge_addresses = list(self._edges)

    def class_of_int(self, address: int) -> str:
        for first, last, device_class in self._assign:
            if first <= address <= last:
                return device_class
        return "unknown"

    def _edge_in(self, first: int, last: int) -> int | None:
        """The lowest network or broadcast address of an include network within [first, last], if any."""
        i = bisect_left(self._edge_addresses, first)
        return self._edge_addresses[i] if i < len(self._edge_addresses) and self._edge_addresses[i] <= last else None

    def allows(self, ip: str) -> bool:
        """True when `ip` may receive packets: inside include, outside exclude, not a refused address."""
        address = int(IPv4Address(ip))
        if address not in self._include or address in self._exclude or self._edge_in(address, address) is not None:
            return False
        try:
            _refuse_special(address, address, ip)
        except ScopeError:
            return False
        return True

    def _describe_include(self) -> str:
        shown = ", ".join(str(net) for net in self.include[:4])
        return shown + (f" and {len(self.include) - 4} more" if len(self.include) > 4 else "")

    def resolve(self, targets: Iterable[str]) -> Resolution:
        """Expand, de-duplicate (first mention wins), split off exclusions and enforce include."""
        if not self._include:
            raise ScopeError(
                "scope.include is empty: set scope.include in the profile (or give --scope) to the networks "
                "you are allowed to scan; nothing was sent"
            )
        seen = _IntervalSet()
        kept: list[tuple[int, int]] = []
        excluded: list[tuple[int, int]] = []
        total = 0
        for target in parse_targets(targets):
            fresh, _ = seen.split(target.first, target.last)
            for first, last in fresh:
                seen.add(first, last)
                total += last - first + 1
                if total > MAX_TARGETS:
                    raise TargetError(
                        f"more than {MAX_TARGETS:,} addresses requested (at {target.origin!r}); "
                        "split the scan into blocks of at most a /16"
                    )
                allowed, dropped = self._exclude.split(first, last)
                excluded.extend(dropped)
                for lo, hi in allowed:
                    outside, _ = self._include.split(lo, hi)
                    if outside:
                        raise ScopeError(
                            f"target {IPv4Address(outside[0][0])} (from {target.origin!r}) is outside "
                            f"scope.include ({self._describe_include()}); nothing was sent"
                        )
                    edge = self._edge_in(lo, hi)
                    if edge is not None:
                        raise ScopeError(
                            f"target {IPv4Address(edge)} (from {target.origin!r}) is {self._edges[edge]}: "
                            "refused, it would reach every device on that subnet; nothing was sent"
                        )
                    kept.append((lo, hi))
        return Resolution(TargetSet(kept, self), TargetSet(excluded, self))


def resolve(
    targets: Iterable[str],
    include: Iterable[str | IPv4Network],
    exclude: Iterable[str | IPv4Network] = (),
    assign: Sequence[tuple[str | IPv4Network, str]] = (),
) -> Resolution:
    """Resolve target specs against a scope; see the module docstring. Raises ScopeError before anything is sent."""
    return Scope(include, exclude, assign).resolve(targets)
