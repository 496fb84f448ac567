"""The Alembic migrations build exactly the schema the models describe."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.db import Base, all_models


def test_migrated_schema_matches_the_models(engine):
    all_models()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"


def test_upgrade_twice_is_harmless(settings):
    from hub.migrations import upgrade

    upgrade(settings.database_url)
    upgrade(settings.database_url)
