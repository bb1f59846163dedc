"""Database URLs and engines for the shared schema: which URL, an engine on it, its migrations, and errors that
never show a password.

The URL comes from `--db`, else `$OTPROBE_DB`, else the `db:` key of the configuration file
(`$OTPROBE_CONFIG`, else `$XDG_CONFIG_HOME/otprobe/config.yaml`). A password in a URL is never printed or logged:
every message names the URL with `***` in its place. Better still, leave it out of the URL: libpq reads
`~/.pgpass` (or `$PGPASSFILE`) and `$PGPASSWORD`, and the URL's query passes TLS options through as they are
(`?sslmode=verify-full&sslrootcert=/etc/otprobe/ca.pem`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from otprobe.errors import InventoryError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CENTRAL_SCHEMES = ("postgresql", "postgres")  # postgres:// is what many tools print; both mean PostgreSQL
# sqlite:///file is the shared schema on a file: for trials and tests; a plain path stays the SQLite file store
URL_SCHEMES = (*CENTRAL_SCHEMES, "sqlite")


def is_central(db: str | Path | None) -> bool:
    """Whether `db` is a database URL (the central store) rather than an inventory file's path."""
    return isinstance(db, str) and db.split(":", 1)[0].split("+", 1)[0] in URL_SCHEMES and "://" in db


def config_path() -> Path:
    configured = os.environ.get("OTPROBE_CONFIG")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "otprobe" / "config.yaml"


def configured(key: str) -> str | None:
    """A key of the configuration file (`db`, `site`); None when the file or the key is absent."""
    import yaml  # here: the commands that never read the configuration file start without it

    path = config_path()
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        raise InventoryError(f"cannot read the configuration file {path}: {exc}") from None
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get(key, ""), str):
        raise InventoryError(f"{path}: expected a mapping with text values (db: postgresql://..., site: name)")
    return data.get(key)


def database_setting(db: str | None) -> str | None:
    """`--db`, else `$OTPROBE_DB`, else the configuration file's `db`; None: the default inventory file."""
    return db or os.environ.get("OTPROBE_DB") or configured("db")


def redact(url: str) -> str:
    """The URL as it may be shown: the password, if any, as ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a database URL that cannot be parsed)"


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password  # type: ignore[return-value]
    except ArgumentError:
        return None


def create(url: str) -> Engine:
    """An engine for a postgresql:// (psycopg 3) or sqlite:// URL; options in the URL's query reach the driver."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InventoryError(f"{redact(url)}: not a database URL (postgresql://user@host/db)") from None
    if parsed.drivername.split("+", 1)[0] in CENTRAL_SCHEMES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    # hide_parameters: a failing statement's values (identities, errors of devices) stay out of error messages
    engine = create_engine(parsed, hide_parameters=True, pool_pre_ping=True)
    if parsed.drivername.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _foreign_keys(connection: Any, _record: Any) -> None:
            connection.execute("PRAGMA foreign_keys=ON")
    return engine


# The newest revision in migrations/versions (a test keeps them equal): a database already there is opened without
# loading Alembic, which costs every read command most of a second.
SCHEMA_REVISION = "0002_asset_kinds"


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema revision; safe to run by several sensors at once."""
    from sqlalchemy import inspect, text

    with engine.connect() as connection:
        if inspect(connection).has_table("alembic_version") and connection.execute(
                text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_REVISION:
            return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # two sensors starting together must not both create the tables: the second waits, then finds them
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7243013)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


@contextmanager
def domain_errors(url: str) -> Iterator[None]:
    """Database failures become one InventoryError naming the URL without its password."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        password = _password(url)
        if password:
            detail = detail.replace(password, "***")
        raise InventoryError(f"{redact(url)}: {detail}") from None


_P = ParamSpec("_P")
_R = TypeVar("_R")


class HasUrl:
    url: str


_S = TypeVar("_S", bound=HasUrl)


def guarded(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """A method whose database failures are `domain_errors` of its object's `url`."""

    @wraps(method)
    def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with domain_errors(self.url):
            return method(self, *args, **kwargs)

    return wrapper


def describe(db: str | None) -> str:
    """The inventory `db` names as it may be shown: a file path, or a URL without its password."""
    from otprobe.inventory.sqlite import default_db_path

    setting = database_setting(db)
    if is_central(setting):
        return redact(setting)  # type: ignore[arg-type]
    return str(Path(setting) if setting else default_db_path())


def audit_beside(setting: str | None) -> Path:
    """The default audit log: beside the inventory file, or in otprobe's data folder for a central inventory."""
    from otprobe.inventory.sqlite import default_db_path

    if is_central(setting):
        return data_dir() / "audit.jsonl"
    return (Path(setting) if setting else default_db_path()).parent / "audit.jsonl"


def data_dir() -> Path:
    """$XDG_DATA_HOME/otprobe (~/.local/share/otprobe): where a sensor keeps its own files."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "otprobe"
