"""The audit log becomes a Merkle tree: leaf_index set once by the sequencer, stored nodes, checkpoints

Revision ID: 0003
Revises: 0002

The append-only triggers stay; the UPDATE one now lets exactly one change through: a NULL
leaf_index given a value, every other column unchanged. On PostgreSQL an entry's seq is taken
after its transaction has an id (refhub_audit_next_seq), so that the sequencer can wait for
every transaction that may still commit an entry below a given seq (hub/audit/sequencer.py).
"""
from alembic import op
import sqlalchemy as sa
import hub.db


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SAME_ROW = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in
                         ("seq", "at", "actor", "action", "referral_id", "packet_sha256", "detail"))
_SQLITE_SAME_ROW = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in
                                ("seq", "at", "actor", "action", "referral_id", "packet_sha256", "detail"))
_MESSAGE = "audit_entry is append-only: only a missing leaf_index may be set, once"


def _sqlite_triggers() -> None:
    op.execute(f"""
        CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
        WHEN NOT (OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL AND {_SQLITE_SAME_ROW})
        BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END
    """)
    op.execute("""
        CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
        BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: DELETE is refused'); END
    """)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if not postgres:
        # batch_alter_table copies the table, which drops its triggers: made again below.
        op.execute("DROP TRIGGER audit_entry_no_update")
        op.execute("DROP TRIGGER audit_entry_no_delete")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaf_index", _BIGINT, nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_audit_entry_leaf_index"), ["leaf_index"])

    op.create_table(
        "audit_node",
        sa.Column("height", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", _BIGINT, autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("height", "idx", name=op.f("pk_audit_node")),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", _BIGINT, autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoint")),
    )

    if postgres:
        op.execute("DROP TRIGGER audit_entry_append_only ON audit_entry")
        op.execute("""
            CREATE TRIGGER audit_entry_append_only BEFORE DELETE OR TRUNCATE ON audit_entry
            FOR EACH STATEMENT EXECUTE FUNCTION refhub_audit_append_only()
        """)
        op.execute(f"""
            CREATE FUNCTION refhub_audit_sequence_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL AND {_SAME_ROW} THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
        op.execute("""
            CREATE TRIGGER audit_entry_sequence_once BEFORE UPDATE ON audit_entry
            FOR EACH ROW EXECUTE FUNCTION refhub_audit_sequence_once()
        """)
        # The transaction id first, then the seq: a transaction that holds a seq is always
        # visible in pg_current_snapshot() until it ends.
        op.execute("""
            CREATE FUNCTION refhub_audit_next_seq() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                PERFORM pg_current_xact_id();
                RETURN nextval(pg_get_serial_sequence('audit_entry', 'seq'));
            END $$
        """)
        op.execute("ALTER TABLE audit_entry ALTER COLUMN seq SET DEFAULT refhub_audit_next_seq()")
    else:
        _sqlite_triggers()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE audit_entry ALTER COLUMN seq SET DEFAULT "
                   "nextval(pg_get_serial_sequence('audit_entry', 'seq'))")
        op.execute("DROP FUNCTION refhub_audit_next_seq()")
        op.execute("DROP TRIGGER audit_entry_sequence_once ON audit_entry")
        op.execute("DROP FUNCTION refhub_audit_sequence_once()")
        op.execute("DROP TRIGGER audit_entry_append_only ON audit_entry")
        op.execute("""
            CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_entry
            FOR EACH STATEMENT EXECUTE FUNCTION refhub_audit_append_only()
        """)
    else:
        op.execute("DROP TRIGGER audit_entry_no_update")
        op.execute("DROP TRIGGER audit_entry_no_delete")
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_node")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_entry_leaf_index"), type_="unique")
        batch_op.drop_column("leaf_index")
    if not postgres:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_entry_no_{verb.lower()} BEFORE {verb} ON audit_entry
                BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: {verb} is refused'); END
            """)
