"""Asset records take a JSON column's text as stored and decode it when it is first read: equal to a record built
from the decoded values, serialised the same, and never decoded by a reader that does not look."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from otprobe.inventory.store import AssetRecord

IDENTITY = {"vendor": "Siemens", "raw": {"s7": {"cpu_state": "RUN"}}}


def record(protocols: dict[str, Any] | str, identity: dict[str, Any] | str, conflicts: dict[str, Any] | str
           ) -> AssetRecord:
    # a store passes a JSON column's text where the field's type says dict: `StoredJSON` takes either
    fields: Any = (protocols, identity, conflicts)
    return AssetRecord("a1", "127.0.1.10", "plc", "Siemens", "CPU 315", None, "S1", "V3.2.7", None, *fields,
                       "t0", "t1", site="plant-a")


def test_a_record_from_stored_text_is_the_record_of_its_values() -> None:
    stored = record('{"s7": 102}', json.dumps(IDENTITY), "{}")
    decoded = record({"s7": 102}, IDENTITY, {})
    assert stored.__dict__["_identity"] == json.dumps(IDENTITY)  # nothing decoded yet
    assert stored == decoded and asdict(stored) == asdict(decoded)
    assert stored.identity == IDENTITY and stored.identity is stored.identity  # decoded once, then kept
    assert asdict(stored)["protocols"] == {"s7": 102} and asdict(stored)["site"] == "plant-a"


def test_a_reader_that_does_not_look_decodes_nothing() -> None:
    stored = record('{"s7": 102}', "not JSON: decoding it would fail", "{}")
    assert (stored.ip, stored.firmware, stored.protocols) == ("127.0.1.10", "V3.2.7", {"s7": 102})
    assert isinstance(stored.__dict__["_identity"], str)
