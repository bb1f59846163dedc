"""Whether the process that opened a scan still runs: a `running` scan whose process is gone was killed."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """True while a process of that id exists on this host (also one of another user, which we may not signal)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
