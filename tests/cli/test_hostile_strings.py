"""Identity strings with terminal control characters, end to end: simulated devices send them, `otprobe scan`
stores them, and every human-facing output (scan table, `inventory list/show/diff`) shows them escaped, on a
plain pipe with NO_COLOR as on a colour terminal, while `--format json` keeps the exact string.

The Modbus device carries every C0 control and DEL in its FC43 objects (ASCII, as the standard has them); the
EtherNet/IP device carries every C0 and C1 control, DEL and escape sequences in its product name (a CIP
SHORT_STRING is one byte per character). The probes decode both byte for byte (Latin-1) and strip only blanks
and NULs at the ends, so each string starts and ends with a letter to reach the inventory whole. The inventory
holds a NUL inside a string as U+2400 (PostgreSQL's TEXT cannot hold it), so what the inventory commands show and
print as JSON is the device's string with that one change; the scan's own output is the string as received.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cli_helpers import Completed, plain_env, run_otprobe, write_profile

from simulators.plant import running_plant

C0 = "".join(map(chr, range(0x20)))
C1 = "".join(map(chr, range(0x80, 0xA0)))
CLEAR, TITLE, HIDE = "\x1b[2J", "\x1b]0;owned\x07", "\x1b[8m"  # clear screen, window title, concealed text

MODBUS = {"address": "127.0.211.10", "vendor_name": f"Acme{C0}Corp", "model_name": f"M{CLEAR}{TITLE}{HIDE}\x7fX",
          "product_code": f"PC{CLEAR}\x00-1", "revision": f"V1.0{TITLE}a"}
ENIP = {"address": "127.0.211.11", "product_name": f"P{C0}\x7f{C1}{CLEAR}{TITLE}{HIDE}Q", "serial": 0x1234ABCD}

PLANT = {"plant": "hostile", "devices": [
    {"name": "hostile-modbus", "class": "plc", "address": MODBUS["address"],
     "modbus": {"port": 5020, **{k: v for k, v in MODBUS.items() if k != "address"}}},
    {"name": "hostile-enip", "class": "plc", "address": ENIP["address"],
     "enip": {"port": 44818, "vendor_id": 1, "device_type": 14, "product_code": 154, "revision": "21.11",
              "serial": ENIP["serial"], "product_name": ENIP["product_name"]}},
]}
TARGETS = [MODBUS["address"], ENIP["address"]]

# what rich itself writes on a colour terminal: SGR sequences (bold headers, a green status)
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every control but the newline that ends a line


def stored(text: str) -> str:
    """The device's string as the inventory holds it."""
    return text.replace("\x00", "\u2400")


def escaped(text: str) -> str:
    """How a person must see `text`: each control character as the four characters \\xNN."""
    return "".join(f"\\x{ord(c):02x}" if CONTROL.match(c) or c == "\n" else c for c in text)


def assert_shown_escaped(done: Completed, *device_strings: str, colour: bool) -> None:
    for stream in (done.stdout, done.stderr):
        own = RICH_SGR.sub("", stream) if colour else stream
        assert not CONTROL.findall(own), sorted(set(CONTROL.findall(own)))
        for raw in (CLEAR, TITLE, HIDE):
            assert raw not in stream
    for text in device_strings:
        assert escaped(text) in done.stdout, escaped(text)


def envs(home: Path) -> dict[str, dict[str, str]]:
    """A pipe with NO_COLOR, and a colour terminal (rich's FORCE_COLOR); wide enough that no cell is folded."""
    plain = plain_env(home, COLUMNS="2000")
    colour = plain_env(home, COLUMNS="2000", TERM="xterm-256color", FORCE_COLOR="1")
    del colour["NO_COLOR"]
    return {"plain": plain, "colour": colour}


async def test_device_control_characters_are_escaped_in_every_table_and_exact_in_json(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "hostile.yaml", ["127.0.211.0/24"])
    db = ["--db", str(tmp_path / "inventory.db")]
    scan = ["scan", *TARGETS, "--profile", str(profile), *db, "--audit", str(tmp_path / "audit.jsonl"),
            "--protocol", "modbus,enip"]
    modbus_strings = [MODBUS[k] for k in ("vendor_name", "model_name", "product_code", "revision")]
    enip_label = f"{ENIP['product_name']} {ENIP['serial']:08X}"

    async with running_plant(PLANT):
        # on a terminal the progress line redraws itself with rich's own cursor controls: --quiet keeps it out
        scans = {mode: await run_otprobe(*scan, *(["--quiet"] if mode == "colour" else []), env=env)
                 for mode, env in envs(tmp_path).items()}
        as_json = await run_otprobe(*scan, "--format", "jsonl", env=envs(tmp_path)["plain"])

    for mode, done in scans.items():
        assert done.code == 0, done.stderr
        assert_shown_escaped(done, *modbus_strings, ENIP["product_name"], colour=mode == "colour")

    # JSON keeps each string exactly as the device sent it, in JSON's own escapes (no raw control byte)
    assert as_json.code == 0, as_json.stderr
    assert not CONTROL.findall(as_json.stdout)
    observed = {o["ip"]: o for o in as_json.rows() if o["status"] == "identified"}
    assert [observed[MODBUS["address"]][k] for k in ("vendor", "model", "product_code", "firmware")] == modbus_strings
    assert observed[ENIP["address"]]["model"] == ENIP["product_name"]

    modbus_strings = [stored(text) for text in modbus_strings]  # from here on, read from the inventory
    enip_label = stored(enip_label)
    first_scan = json.loads((await run_otprobe("scans", "list", *db, "--format", "json",
                                               env=envs(tmp_path)["plain"])).stdout)[0]["id"]
    for mode, env in envs(tmp_path).items():
        # a streamed table's columns are sized before the text is escaped: --wide shows each value whole
        listed = await run_otprobe("inventory", "list", "--wide", *db, env=env)
        assert_shown_escaped(listed, *modbus_strings, stored(ENIP["product_name"]), colour=mode == "colour")
        shown = await run_otprobe("inventory", "show", MODBUS["address"], *db, env=env)
        assert_shown_escaped(shown, *modbus_strings, colour=mode == "colour")
        shown = await run_otprobe("inventory", "show", ENIP["address"], *db, env=env)
        assert_shown_escaped(shown, stored(ENIP["product_name"]), colour=mode == "colour")
        # against the first scan everything is new, labelled with the device's model (and serial); the labels'
        # width is not known before the diff streams them: --wide shows each whole
        diff = await run_otprobe("inventory", "diff", "--to", first_scan, "--wide", *db, env=env)
        assert diff.code == 1, diff.stderr
        assert_shown_escaped(diff, MODBUS["model_name"], enip_label, colour=mode == "colour")

    plain = envs(tmp_path)["plain"]
    listed_json = await run_otprobe("inventory", "list", *db, "--format", "json", env=plain)
    assert not CONTROL.findall(listed_json.stdout)  # the database's JSON too: every control escaped, C1 included
    assets: dict[str, Any] = {a["ip"]: a for a in listed_json.json()}
    assert [assets[MODBUS["address"]][k] for k in ("vendor", "model", "product_code", "firmware")] == modbus_strings
    assert assets[ENIP["address"]]["model"] == stored(ENIP["product_name"])
    detail = (await run_otprobe("inventory", "show", ENIP["address"], *db, "--format", "json", env=plain)).json()
    assert detail["identity"]["product_name"] == stored(ENIP["product_name"])
    diff_json = await run_otprobe("inventory", "diff", "--to", first_scan, *db, "--format", "json", env=plain)
    assert enip_label in {c["new"] for c in diff_json.json()["changes"]}
