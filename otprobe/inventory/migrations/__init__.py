"""Alembic migrations of the inventory schema (`otprobe.inventory.schema`), run by `otprobe.inventory.database`
without an alembic.ini. A new revision: `alembic -x url=sqlite:///x.db revision -m "..."` from this directory's
parent, then write its upgrade by hand against schema.py (the schema test compares them)."""
