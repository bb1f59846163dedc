"""Reading a file the user names (a target list, a profile): a regular file only, of bounded size, never blocking.

A plain `open().read()` follows the name wherever it points: `/dev/zero` never ends, a FIFO blocks until some
writer appears, and a large file is read whole into memory. So the file is opened non-blocking, checked with
`fstat` on the open descriptor (the very file that will be read, not what the name pointed at a moment before),
and read up to its limit plus one byte, which also catches a file that grows or lies about its size.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class UserFileError(ValueError):
    """Why a named file cannot be used; the caller adds which file and turns it into its own domain error."""


def read_text(path: Path, limit: int) -> str:
    """The UTF-8 text of the regular file at `path`, at most `limit` bytes; UserFileError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging the command
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UserFileError(exc.strerror or str(exc)) from None
    except ValueError as exc:  # an embedded NUL byte in the name
        raise UserFileError(str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise UserFileError(f"{kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UserFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if size > limit:
        raise UserFileError(f"larger than the limit of {limit // 1024} KiB")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserFileError(f"not UTF-8 text (byte {exc.start})") from None
