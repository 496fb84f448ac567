"""Alembic environment: runs migrations with the hub's own engine settings."""
from __future__ import annotations

from alembic import context

from hub.db import make_engine
from hub.models import metadata as target_metadata

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several processes may run `hub init` at once; one migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(72010417)")
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `hub init`")
run_migrations_online()
