"""the Idempotency-Key and the request's hash live on the referral they created (one INSERT fewer)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

import hub.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("referral", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.add_column("referral", sa.Column("request_sha256", sa.String(length=64), nullable=True))
    op.execute("UPDATE referral SET "
               "idempotency_key = (SELECT i.key FROM idempotency_record i WHERE i.referral_id = referral.id), "
               "request_sha256 = (SELECT i.request_sha256 FROM idempotency_record i WHERE i.referral_id = referral.id)"
               " WHERE id IN (SELECT referral_id FROM idempotency_record)")
    # NULLs are distinct: a referral submitted without a key takes no place in it.
    op.create_index("uq_referral_idempotency", "referral", ["from_agency_id", "idempotency_key"], unique=True)
    op.drop_table("idempotency_record")


def downgrade() -> None:
    op.create_table(
        "idempotency_record",
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"], name=op.f("fk_idempotency_record_agency_id_agency")),
        sa.ForeignKeyConstraint(["referral_id"], ["referral.id"],
                                name=op.f("fk_idempotency_record_referral_id_referral")),
        sa.PrimaryKeyConstraint("agency_id", "key", name=op.f("pk_idempotency_record")),
    )
    op.execute("INSERT INTO idempotency_record (agency_id, key, request_sha256, referral_id, created_at) "
               "SELECT from_agency_id, idempotency_key, request_sha256, id, created_at FROM referral "
               "WHERE idempotency_key IS NOT NULL")
    op.drop_index("uq_referral_idempotency", table_name="referral")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of the referral table would
    # have to drop a table that other tables' foreign keys point at.
    op.drop_column("referral", "request_sha256")
    op.drop_column("referral", "idempotency_key")
