"""Scope: target parsing, refusals, exclusion, include enforcement, class assignment, and planning a /16."""

from __future__ import annotations

import time
import tracemalloc
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otprobe.errors import ScopeError
from otprobe.model import Target
from otprobe.scope import MAX_TARGETS, Scope, parse_targets, resolve

LOOPBACK = ["127.0.0.0/8"]


def ips(specs: list[str], include: list[str] = LOOPBACK, exclude: tuple[str, ...] = ()) -> list[str]:
    return resolve(specs, include, exclude).targets.ips()


def test_cidr_skips_network_and_broadcast_below_31() -> None:
    block = ips(["127.0.1.0/24"])
    assert len(block) == 254
    assert (block[0], block[-1]) == ("127.0.1.1", "127.0.1.254")
    assert ips(["127.0.1.4/31"]) == ["127.0.1.4", "127.0.1.5"]
    assert ips(["127.0.1.4/32"]) == ["127.0.1.4"]


def test_ranges_in_both_spellings() -> None:
    assert ips(["127.0.1.1-127.0.1.3"]) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert ips(["127.0.1.250-127.0.2.1"]) == [f"127.0.1.{n}" for n in range(250, 256)] + ["127.0.2.0", "127.0.2.1"]
    assert ips(["127.0.1.18-20"]) == ["127.0.1.18", "127.0.1.19", "127.0.1.20"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("127.0.1.20-127.0.1.1", "ends before it starts"),
        ("127.0.1.5-300", "above 255"),
        ("127.0.1.300", "invalid target '127.0.1.300'"),
        ("127.0.1.5/24", "has host bits set"),
        ("plc-07.plant.local", "no DNS"),
        ("::1", "IPv6 is not supported"),
        ("255.255.255.255", "the broadcast address"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250/32", "multicast"),
        ("0.0.0.5", "0.0.0.0/8"),
        ("169.254.10.1", "link-local"),
        ("223.255.255.254-224.0.0.1", "includes 224.0.0.0, in multicast"),
    ],
)
def test_bad_and_refused_targets(spec: str, fragment: str) -> None:
    with pytest.raises(ScopeError, match=fragment):
        resolve([spec], ["0.0.0.0/0"])


def test_target_files_with_comments(tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("# line one\n127.0.1.7\n\n127.0.1.9-10  # a range\n   # indented comment\n127.0.2.0/30\n")
    expected = ["127.0.1.7", "127.0.1.9", "127.0.1.10", "127.0.2.1", "127.0.2.2"]
    assert ips([f"@{listing}"]) == expected
    assert ips([str(listing)]) == expected


def test_bad_line_in_a_target_file_names_file_and_line(tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("127.0.1.7\nhistorian\n")
    with pytest.raises(ScopeError, match=rf"{listing}:2 historian"):
        ips([f"@{listing}"])
    with pytest.raises(ScopeError, match="cannot read target file"):
        ips([f"@{tmp_path / 'missing.txt'}"])


def test_order_of_first_mention_and_no_duplicates() -> None:
    assert ips(["127.0.1.5", "127.0.1.0/29", "127.0.1.5", "127.0.1.2-3"]) == [
        "127.0.1.5",
        "127.0.1.1",
        "127.0.1.2",
        "127.0.1.3",
        "127.0.1.4",
        "127.0.1.6",
    ]


def test_exclude_wins_and_excluded_hosts_are_reported() -> None:
    result = resolve(["127.0.1.0/29"], ["127.0.1.0/24"], ["127.0.1.2", "127.0.1.4/31"])
    assert result.targets.ips() == ["127.0.1.1", "127.0.1.3", "127.0.1.6"]
    assert result.excluded.ips() == ["127.0.1.2", "127.0.1.4", "127.0.1.5"]
    assert "127.0.1.4" in result.excluded and "127.0.1.4" not in result.targets


def test_an_excluded_target_outside_include_is_excluded_not_refused() -> None:
    result = resolve(["127.0.1.1", "127.0.9.9"], ["127.0.1.0/24"], ["127.0.9.0/24"])
    assert result.targets.ips() == ["127.0.1.1"]
    assert result.excluded.ips() == ["127.0.9.9"]


def test_target_outside_include_is_refused_naming_target_and_scope() -> None:
    with pytest.raises(ScopeError) as refused:
        resolve(["127.0.1.1", "127.0.1.250-127.0.2.3"], ["127.0.1.0/24"])
    message = str(refused.value)
    assert "127.0.2.0" in message and "127.0.1.250-127.0.2.3" in message
    assert "127.0.1.0/24" in message and "nothing was sent" in message


def test_empty_include_refuses_everything_and_says_what_to_set() -> None:
    with pytest.raises(ScopeError, match=r"scope\.include is empty"):
        resolve(["127.0.1.1"], [])


def test_classes_from_assign_first_match_wins_else_unknown() -> None:
    assign = [("127.0.1.0/28", "rtu"), (IPv4Network("127.0.1.0/24"), "plc")]
    result = resolve(["127.0.1.3", "127.0.1.20", "127.0.2.1"], LOOPBACK, (), assign)
    assert list(result.targets) == [
        Target("127.0.1.3", "rtu"),
        Target("127.0.1.20", "plc"),
        Target("127.0.2.1", "unknown"),
    ]


@pytest.mark.parametrize(("spec", "address", "what"), [
    ("127.0.5.255", "127.0.5.255", "broadcast address of scope.include 127.0.5.0/24"),
    ("127.0.5.0", "127.0.5.0", "network address of scope.include 127.0.5.0/24"),
    ("127.0.5.250-127.0.5.255", "127.0.5.255", "broadcast address of scope.include 127.0.5.0/24"),
    ("127.0.5.0-127.0.5.255", "127.0.5.0", "network address of scope.include 127.0.5.0/24"),
    ("127.0.4.0/23", "127.0.4.255", "broadcast address of scope.include 127.0.4.0/24"),  # a block over two includes
])
def test_network_and_broadcast_addresses_of_an_include_network_are_refused(spec: str, address: str,
                                                                         what: str) -> None:
    with pytest.raises(ScopeError) as refused:
        resolve([spec], ["127.0.4.0/24", "127.0.5.0/24"])
    assert str(refused.value).startswith(f"target {address} (from {spec!r}) is the {what}: refused")


def test_include_edges_are_fine_when_skipped_or_excluded_or_at_31() -> None:
    assert len(ips(["127.0.5.0/24"], ["127.0.5.0/24"])) == 254  # CIDR expansion skips both edges
    excluded = resolve(["127.0.5.250-127.0.5.255"], ["127.0.5.0/24"], ["127.0.5.255/32"])
    assert (len(excluded.targets), excluded.excluded.ips()) == (5, ["127.0.5.255"])
    assert ips(["127.0.5.4-127.0.5.5"], ["127.0.5.4/31"]) == ["127.0.5.4", "127.0.5.5"]


def test_allows_rechecks_single_addresses() -> None:
    scope = Scope(["127.0.1.0/24", "224.0.0.0/4"], ["127.0.1.9"])
    assert scope.allows("127.0.1.8")
    assert not scope.allows("127.0.1.255")  # the include network's broadcast address
    assert not scope.allows("127.0.1.9")  # excluded
    assert not scope.allows("127.0.2.1")  # outside include
    assert not scope.allows("224.0.0.1")  # multicast, even when a careless include covers it


def test_planning_a_slash_16_is_fast_and_light() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    result = resolve(["127.0.0.0/16"], LOOPBACK, ["127.0.9.0/24"], [("127.0.1.0/24", "plc")])
    counted = (len(result.targets), len(result.excluded))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert counted == (65_534 - 256, 256)
    assert elapsed < 1.0
    assert peak < 512 * 1024  # intervals, not 65,534 objects
    assert sum(1 for _ in result.targets) == counted[0]  # and iterating yields exactly that many


def test_more_than_a_slash_16_is_refused() -> None:
    with pytest.raises(ScopeError, match=f"more than {MAX_TARGETS:,}"):
        resolve(["127.0.0.0/15"], LOOPBACK)


def test_parse_targets_is_lazy_for_files_after_the_first_spec(tmp_path: Path) -> None:
    ranges = parse_targets(["127.0.1.1", f"@{tmp_path / 'absent.txt'}"])
    assert next(ranges).origin == "127.0.1.1"  # the missing file is only touched when reached
    with pytest.raises(ScopeError):
        next(ranges)


# --- property: over random scopes, exclusions and targets inside 127.0.0.0/20 ----------------------------------

_BASE = int(IPv4Address("127.0.0.0"))
_address = st.integers(0, 4095).map(lambda n: IPv4Address(_BASE + n))
_block = st.builds(lambda a, p: IPv4Network(f"{a}/{p}", strict=False), _address, st.integers(24, 32))


def _spec(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["host", "block", "range"]))
    if kind == "host":
        return str(draw(_address))
    if kind == "block":
        return str(draw(_block))
    first = draw(_address)
    return f"{first}-{IPv4Address(min(int(first) + draw(st.integers(0, 40)), _BASE + 4095))}"


def _expand(spec: str) -> set[int]:
    return {address for target in parse_targets([spec]) for address in range(target.first, target.last + 1)}


@settings(max_examples=150, deadline=None)
@given(
    include=st.lists(_block, max_size=3),
    exclude=st.lists(_block, max_size=3),
    specs=st.lists(st.composite(lambda draw: _spec(draw))(), min_size=1, max_size=5),
)
def test_nothing_excluded_or_outside_include_is_ever_returned(
    include: list[IPv4Network], exclude: list[IPv4Network], specs: list[str]
) -> None:
    def inside(address: int, nets: list[IPv4Network]) -> bool:
        return any(IPv4Address(address) in net for net in nets)

    requested = set().union(*(_expand(spec) for spec in specs))
    edges = {int(a) for net in include if net.prefixlen < 31 for a in (net.network_address, net.broadcast_address)}
    should_refuse = not include or any(not inside(a, exclude) and (not inside(a, include) or a in edges)
                                       for a in requested)
    try:
        result = resolve(specs, include, exclude)
    except ScopeError:
        assert should_refuse
        return
    assert not should_refuse
    targets = {int(IPv4Address(ip)) for ip in result.targets.ips()}
    excluded = {int(IPv4Address(ip)) for ip in result.excluded.ips()}
    assert all(inside(a, include) and not inside(a, exclude) for a in targets)
    assert all(inside(a, exclude) for a in excluded)
    assert targets | excluded == requested and not targets & excluded
    assert len(result.targets) == len(targets)  # no duplicates
