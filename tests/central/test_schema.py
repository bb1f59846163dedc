"""The migrations build the schema schema.py describes, the same on a SQLite file and on PostgreSQL, and running
them again (or by two sensors at once) changes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from otprobe.inventory.database import SCHEMA_REVISION, create, head_revision, upgrade
from otprobe.inventory.schema import metadata

pytest_plugins = ("central_pg",)  # the PostgreSQL fixtures (a conftest.py here would shadow the suite's)


def shape(engine: Engine) -> dict[str, Any]:
    """Tables, columns (name, nullability, generic type), keys and indexes, as the database reports them."""
    found = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(found.get_table_names()):
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": [(c["name"], c["nullable"], type(c["type"]._type_affinity).__name__)  # type: ignore[attr-defined]
                        for c in found.get_columns(table)],
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                    tuple(fk["referred_columns"])) for fk in found.get_foreign_keys(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in found.get_indexes(table)),
        }
    return tables


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), metadata)


def test_the_migrations_build_schema_py_on_sqlite_and_postgresql_alike(tmp_path: Path, pg_url: str) -> None:
    lite, pg = create(f"sqlite:///{tmp_path / 'central.db'}"), create(pg_url)
    try:
        for engine in (lite, pg):
            upgrade(engine)
            assert differences(engine) == [], engine.dialect.name
        assert shape(lite) == shape(pg)
        assert set(shape(pg)) == set(metadata.tables)
        for engine in (lite, pg):
            with engine.connect() as connection:
                assert MigrationContext.configure(connection).get_current_revision() == head_revision()
        assert head_revision() == SCHEMA_REVISION  # else an up-to-date database would be migrated on every open
    finally:
        lite.dispose()
        pg.dispose()


def test_two_sensors_migrating_one_new_database_at_once_both_succeed(pg_url: str) -> None:
    engines = [create(pg_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(upgrade, engines))
        upgrade(engines[0])  # and again: nothing to do
        assert differences(engines[0]) == []
    finally:
        for engine in engines:
            engine.dispose()
