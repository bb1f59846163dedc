"""Reconciliation on plain data, without a database: which asset each address of a scan is, and what changed.

`apply` below writes decisions the way a store does (retire, unaddress, create or update), so properties can be
stated over whole scans: a scan that repeats the previous one changes nothing, and every address ends up in exactly
one asset.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from otprobe.inventory.merge import MergedIdentity
from otprobe.inventory.reconcile import (
    Decision,
    DeviceSeen,
    Event,
    KnownAsset,
    devices_seen,
    reconcile,
    shared_serials,
)
from otprobe.model import Identity, Observation, Status

IPS = [f"127.0.9.{i}" for i in range(1, 7)]


def seen(ip: str, serial: str | None = None, model: str | None = None, firmware: str | None = None) -> DeviceSeen:
    fields = {k: v for k, v in {"serial": serial, "model": model, "firmware": firmware}.items() if v is not None}
    return DeviceSeen(ip, "plc", MergedIdentity(fields=fields))


def apply(known: list[KnownAsset], decisions: list[Decision]) -> list[KnownAsset]:
    """The active assets after a store wrote `decisions`."""
    assets = {k.id: k for k in known}
    for n, d in enumerate(decisions):
        if d.retire is not None:
            del assets[d.retire]
        if d.unaddress is not None:
            assets[d.unaddress] = replace(assets[d.unaddress], ip=None)
        asset_id = d.asset_id or f"new{n}"
        assets[asset_id] = KnownAsset(asset_id, d.seen.ip, d.seen.serial, d.seen.model, d.firmware)
    return list(assets.values())


# small pools, so that serials repeat, devices move and addresses are taken over
serials = st.none() | st.sampled_from(["S1", "S2", "S3"])
models = st.none() | st.sampled_from(["L18ER", "M580"])
firmwares = st.none() | st.sampled_from(["1.0", "2.0"])
scans = st.lists(st.builds(seen, st.sampled_from(IPS), serials, models, firmwares), unique_by=lambda s: s.ip,
                 max_size=len(IPS))


@st.composite
def inventories(draw: st.DrawFn) -> list[KnownAsset]:
    rows = draw(st.lists(st.tuples(st.none() | st.sampled_from(IPS), serials, models, firmwares), max_size=8))
    taken: set[str] = set()
    known = []
    for n, (ip, serial, model, firmware) in enumerate(rows):
        if ip in taken:  # an address is held by one active asset at most
            ip = None
        if ip is not None:
            taken.add(ip)
        known.append(KnownAsset(f"k{n}", ip, serial, model, firmware))
    return known


@settings(max_examples=300, deadline=None)
@given(inventories(), scans)
def test_every_address_ends_up_in_exactly_one_asset(known: list[KnownAsset], scan: list[DeviceSeen]) -> None:
    decisions = reconcile(scan, known)
    assert [d.seen for d in decisions] == scan
    matched = [d.asset_id for d in decisions if d.asset_id is not None]
    touched = [x for d in decisions for x in (d.retire, d.unaddress) if x is not None]
    assert len(set(matched)) == len(matched) and len(set(touched)) == len(touched)
    assert not set(matched) & set(touched)  # an asset one address keeps is never retired or moved off by another
    after = apply(known, decisions)
    holders = [a.ip for a in after if a.ip is not None]
    assert len(holders) == len(set(holders))
    assert {s.ip for s in scan} <= set(holders)
    assert len(after) == len(known) + sum(d.asset_id is None for d in decisions) - sum(d.retire is not None
                                                                                        for d in decisions)


@settings(max_examples=300, deadline=None)
@given(inventories(), scans)
def test_a_scan_that_repeats_the_previous_one_changes_nothing(known: list[KnownAsset], scan: list[DeviceSeen]) -> None:
    after = apply(known, reconcile(scan, known))
    again = reconcile(scan, after)
    at = {a.ip: a.id for a in after}
    assert [d.asset_id for d in again] == [at[s.ip] for s in scan]
    assert all(d.retire is None and d.unaddress is None and not d.events for d in again)
    assert not any(d.firmware_recorded or d.address_recorded for d in again)
    assert sorted(apply(after, again), key=lambda a: a.id) == sorted(after, key=lambda a: a.id)


def test_a_new_device_is_a_new_asset_with_its_firmware_and_address_recorded() -> None:
    (d,) = reconcile([seen("127.0.9.1", "S1", "L18ER", "1.0")], [])
    assert (d.asset_id, d.events, d.firmware) == (None, (Event("new", None, "127.0.9.1"),), "1.0")
    assert d.firmware_recorded and d.address_recorded


def test_firmware_that_could_not_be_read_is_kept_and_a_new_one_is_a_change() -> None:
    known = [KnownAsset("a", "127.0.9.1", "S1", "L18ER", "1.0")]
    (unread,) = reconcile([seen("127.0.9.1", "S1", "L18ER")], known)
    assert (unread.asset_id, unread.firmware, unread.events, unread.firmware_recorded) == ("a", "1.0", (), False)
    (changed,) = reconcile([seen("127.0.9.1", "S1", "L18ER", "2.0")], known)
    assert changed.events == (Event("firmware_changed", "1.0", "2.0"),)
    assert changed.firmware_recorded and not changed.address_recorded


def test_a_move_keeps_the_asset_and_records_the_new_address() -> None:
    known = [KnownAsset("a", "127.0.9.1", "S1", "L18ER", "1.0")]
    (d,) = reconcile([seen("127.0.9.2", "S1", "L18ER", "1.0")], known)
    assert (d.asset_id, d.events) == ("a", (Event("moved", "127.0.9.1", "127.0.9.2"),))
    assert d.address_recorded and not d.firmware_recorded


def test_another_device_at_a_known_address_retires_the_old_asset() -> None:
    known = [KnownAsset("a", "127.0.9.1", "S1", "L18ER", "1.0")]
    (d,) = reconcile([seen("127.0.9.1", "S9", "M580", "2.0")], known)
    assert (d.asset_id, d.retire, d.firmware) == (None, "a", "2.0")
    assert d.events == (Event("new", None, "127.0.9.1"), Event("replaced", "L18ER", "M580", "a"))


def test_a_resumed_scan_merges_what_its_chain_saw_of_the_addresses_it_probed() -> None:
    def obs(ip: str, protocol: str, status: Status = Status.IDENTIFIED, **ident: str) -> Observation:
        identity = Identity(**ident) if status is Status.IDENTIFIED else None
        return Observation(ip, protocol, 102, status, identity, 0.01, 4, None, "plc")

    now = [obs("127.0.9.1", "enip", serial="S1"), obs("127.0.9.2", "enip", Status.TIMEOUT)]
    earlier = [obs("127.0.9.1", "s7", firmware="V3.2"), obs("127.0.9.3", "s7", serial="S3")]
    (device,) = devices_seen(now, earlier)  # .2 did not identify; .3 is not this scan's to merge
    assert (device.ip, device.serial, device.identity.get("firmware")) == ("127.0.9.1", "S1", "V3.2")
    assert device.identity.sources == {"serial": "enip", "firmware": "s7"}


def test_a_serial_is_shared_when_several_assets_carry_it_and_a_missing_one_never_is() -> None:
    assert shared_serials(["S1", None, "S1", "S2", None, ""]) == {"S1"}
