"""Target files (`otprobe plan|scan @file`) a user may point anywhere: only a regular file of bounded size is read,
a FIFO or a device is refused without blocking, and an error line never prints more than the start of a line.

Each case runs `otprobe plan` (no packet is ever sent) as a subprocess with a time limit and an address-space
limit, so a regression shows as a failed assertion instead of a hung or swapping test run.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO, plain_env

from otprobe.scope import TARGET_FILE_LIMIT

MEMORY_LIMIT = 1 << 30  # address space of the child: far above what reading a 1 MiB file needs


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def plan_file(target: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otprobe", "plan", target, "--profile", "lab"], cwd=REPO,
                          env=plain_env(home), capture_output=True, text=True, timeout=20, preexec_fn=_limit_memory)


def usage_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a run that exited 2, as a usage error does."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("otprobe: error: "), done.stderr
    return lines[0]


def test_dev_zero_is_refused_as_a_device_without_reading_it(tmp_path: Path) -> None:
    line = usage_error(plan_file("@/dev/zero", tmp_path))
    assert "'/dev/zero': a character device, not a regular file" in line


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "targets.fifo"
    os.mkfifo(fifo)
    line = usage_error(plan_file(f"@{fifo}", tmp_path))
    assert "a FIFO, not a regular file" in line


def test_a_directory_and_a_missing_file_are_usage_errors(tmp_path: Path) -> None:
    assert "a directory, not a regular file" in usage_error(plan_file(f"@{tmp_path}", tmp_path))
    assert "No such file or directory" in usage_error(plan_file(f"@{tmp_path / 'missing.txt'}", tmp_path))


@pytest.mark.parametrize("secret", ["root:$6$Zq7pX2$Hk3mNvR8tY1wQ9eB4cL6sD0fG5jA2uI7oP3xE8rT1yW:19000:0:99999:7:::",
                                    "password-for-the-historian-is-correct-horse-battery-staple"])
def test_a_symlink_to_a_secret_file_prints_only_the_start_of_the_offending_line(tmp_path: Path, secret: str) -> None:
    private = tmp_path / "private"
    private.write_text(f"{secret}\n")
    link = tmp_path / "targets.txt"
    link.symlink_to(private)
    line = usage_error(plan_file(f"@{link}", tmp_path))
    assert f"{link}:1 " in line
    assert secret[:20] in line  # the start of the token, so the user sees which line is wrong
    assert secret[32:] not in line and secret[40:48] not in line
    assert len(line) < len(str(link)) + 200


def test_a_file_above_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "targets.txt"
    line = "127.0.1.1  # a padded comment line\n"
    big.write_text(line * (TARGET_FILE_LIMIT // len(line) + 1))
    assert big.stat().st_size > TARGET_FILE_LIMIT
    assert "larger than the limit of 1024 KiB" in usage_error(plan_file(f"@{big}", tmp_path))
    big.write_text(line * (TARGET_FILE_LIMIT // len(line)))  # just under the limit: read and planned
    done = plan_file(f"@{big}", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout


def test_a_long_target_argument_is_quoted_cut_short(tmp_path: Path) -> None:
    for target in ("1." * 5000 + "1", "historian-" * 500):
        line = usage_error(plan_file(target, tmp_path))
        assert target[:20] in line and len(line) < 300
