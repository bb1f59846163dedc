"""Sites: which plant or zone a scan belongs to, in an inventory shared by many sensors. An address is unique only
within its site (plants reuse the same private ranges), so every scan and every asset of a central inventory names
its site. Light on purpose: the CLI checks `--site` before it imports any database library.
"""

from __future__ import annotations

import os
import re

from otprobe.inventory.database import configured

DEFAULT_SITE = "default"  # a sensor that names no site; stable, unlike a host name, so that its history stays one
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_site(name: str) -> str:
    """A site name as it is stored: letters, digits, '.', '_', '-', at most 64, starting with a letter or digit."""
    if not _SITE_NAME.match(name):
        raise ValueError(f"site {name!r}: use letters, digits, '.', '_' and '-' (at most 64, first a letter or digit)")
    return name


def sensor_site(explicit: str | None, profile_site: str | None = None) -> str:
    """The site a sensor's scans belong to: `--site`, the profile's `site:`, $OTPROBE_SITE, the configuration
    file's `site:`, else `default`."""
    return check_site(explicit or profile_site or os.environ.get("OTPROBE_SITE") or configured("site")
                      or DEFAULT_SITE)
