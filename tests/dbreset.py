"""Emptying a PostgreSQL test database between tests."""
from __future__ import annotations

import sqlalchemy as sa

from hub.db import Base


def empty_postgres(engine: sa.Engine) -> None:
    """TRUNCATE every table. The audit log refuses TRUNCATE (migration 0002), so its trigger is
    switched off for this one statement: a test database may start afresh, production may not."""
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))
