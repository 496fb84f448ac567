"""audit_entry is append-only: the database refuses UPDATE and DELETE

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION refhub_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_entry is append-only: % is refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
        op.execute("""
            CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_entry
            FOR EACH STATEMENT EXECUTE FUNCTION refhub_audit_append_only()
        """)
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_entry_no_{verb.lower()} BEFORE {verb} ON audit_entry
                BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: {verb} is refused'); END
            """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION refhub_audit_append_only()")
    else:
        op.execute("DROP TRIGGER audit_entry_no_update")
        op.execute("DROP TRIGGER audit_entry_no_delete")
