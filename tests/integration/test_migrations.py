"""The Alembic migrations build exactly the schema the models describe."""
from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.migrations import alembic_config
from hub.models import metadata


def test_migrated_schema_matches_the_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], "models changed without a migration: run alembic revision --autogenerate"


def test_upgrade_twice_is_harmless(settings, engine):
    from hub.migrations import upgrade

    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO agency (id, kind, name_en, name_km, short_name, province, services, active, "
                             "updated_at) VALUES ('zz-kept', 'shelter', 'Kept', 'Kept', 'Kept', 'KH-12', "
                             "'[]', true, '2026-11-22 10:00:00')"))
    upgrade(settings.database_url)
    upgrade(settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM agency WHERE id = 'zz-kept'")).scalar() == 1
        head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert head == ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()


def test_audit_log_refuses_update_and_delete(engine, db, clock):
    """Nobody, not even code with database access, rewrites or removes an audit entry."""
    import pytest
    import sqlalchemy as sa

    from hub.audit.models import AuditEntry
    from hub.audit.service import record

    with db() as s, s.begin():
        record(s, at=clock.now(), actor="hub", action="test.entry")
    for statement in ("UPDATE audit_entry SET action = 'rewritten'", "DELETE FROM audit_entry"):
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
            conn.execute(sa.text(statement))
        assert "append-only" in str(caught.value.orig)
    with db() as s:
        assert [e.action for e in s.scalars(sa.select(AuditEntry))] == ["test.entry"]
