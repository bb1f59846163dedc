"""A real PostgreSQL for the central store's tests, and a throwaway database on it for each test (fixtures the test
modules import: a conftest.py here would shadow the suite's own `conftest` module, which tests import helpers from).

The server, in order: `$OTPROBE_TEST_PG` (a URL of a role that may create databases); the local server at
127.0.0.1:5432 (trust authentication, database `postgres`); a throwaway server started from the installed
`initdb`/`pg_ctl` on a free loopback port (as the `nobody` user when the tests run as root: PostgreSQL refuses to
run as root); otherwise the PostgreSQL tests skip, saying why. Only loopback addresses are ever used.

`.ci/run` sets `OTPROBE_REQUIRE_PG=1`: there a missing PostgreSQL fails these tests instead of skipping them, so CI
cannot pass with the central store untested.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _unavailable(reason: str) -> None:
    if os.environ.get("OTPROBE_REQUIRE_PG") == "1":
        pytest.fail(f"OTPROBE_REQUIRE_PG=1 but {reason}")
    pytest.skip(reason)


def _answers(url: str) -> str | None:
    """None if a server answers at `url`, else why not."""
    import psycopg

    try:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _throwaway_server(base: Path) -> tuple[str | None, str, list[str]]:
    """Start a server from the installed binaries: (URL or None, why not, the command that stops it)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        return None, "no PostgreSQL binaries (initdb, pg_ctl) installed", []
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        if not runuser:
            return None, "running as root and no runuser to start PostgreSQL as nobody", []
        prefix = [runuser, "-u", "nobody", "--"]
        base.chmod(0o777)
    data, port = base / "data", _free_port()
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                        f"-h 127.0.0.1 -p {port} -k {base}", "start"], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"cannot start a throwaway PostgreSQL: {exc}", []
    return (f"postgresql://postgres@127.0.0.1:{port}/postgres", "",
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A URL of a PostgreSQL role that may create databases, or a skip naming the reason."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed")
    configured = os.environ.get("OTPROBE_TEST_PG")
    if configured:
        why = _answers(configured)
        if why:
            _unavailable(f"$OTPROBE_TEST_PG does not answer: {why}")
        yield configured
        return
    if _answers(LOCAL) is None:
        yield LOCAL
        return
    base = Path(tempfile.mkdtemp(prefix="otprobe-pg-"))
    url, why, stop = _throwaway_server(base)
    if url is None:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"no PostgreSQL for the central store tests: {why}")
    try:
        yield url
    finally:
        subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"otprobe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL: the shared schema means one behaviour."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return str(request.getfixturevalue("pg_url"))

