"""Alembic's entry for the store's migrations (run by store/db.py `_alembic_upgrade`, never by hand).

The caller passes an open SQLAlchemy connection (`config.attributes["connection"]`). All pending
revisions run in one transaction; its first statement takes the database's write lock (SQLite:
the engine's BEGIN IMMEDIATE; PostgreSQL: an advisory lock), and only then is the current revision
read, so two processes opening a new store at once apply each revision once.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
# SQLite's DDL is transactional too (Alembic assumes not): one transaction for everything, on both
context.configure(connection=connection, transaction_per_migration=False, transactional_ddl=True)


def _adopt_sqlite_store_made_before_alembic(ctx) -> None:
    """A store written by learnagent before Alembic counted its migrations in `PRAGMA user_version`
    (1..6, the same steps as revisions 0001..0006): record it at that revision, so only what it
    lacks is applied and none of its rows are touched."""
    if connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").first():
        return
    version = connection.exec_driver_sql("PRAGMA user_version").scalar()
    if version:
        ctx.stamp(context.script, f"{version:04d}")


with context.begin_transaction():
    ctx = context.get_context()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({config.attributes['lock_key']})")
    elif connection.dialect.name == "sqlite":
        _adopt_sqlite_store_made_before_alembic(ctx)
    context.run_migrations()
    if connection.dialect.name == "sqlite":
        # the fast check store/db.py makes on every open, kept equal to the Alembic revision
        connection.exec_driver_sql(f"PRAGMA user_version = {int(ctx.get_current_revision())}")
