"""Reports: the ladder's record, the ack deadline kept, an index per receiving agency and time

Revision ID: 0004
Revises: 0003
"""
import json

import sqlalchemy as sa
from alembic import op

from hub.config import Policy
from hub.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ladder_step",
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("clock", sa.String(8), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("fired_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["referral_id"], ["referral.id"], name=op.f("fk_ladder_step_referral_id_referral")),
        sa.PrimaryKeyConstraint("referral_id", "clock", "step", name=op.f("pk_ladder_step")),
    )
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack_deadline_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_referral_to_created", ["to_agency_id", "created_at"], unique=False)
    _backfill_ack_deadlines()


def _backfill_ack_deadlines() -> None:
    """Referrals made before this revision: created_at plus the ack_within of their frozen policy."""
    conn = op.get_bind()
    referral = sa.table("referral", sa.column("id", sa.String), sa.column("created_at", UTCDateTime(timezone=True)),
                        sa.column("ladder", sa.Text), sa.column("ack_deadline_at", UTCDateTime(timezone=True)))
    for rid, created_at, ladder in conn.execute(sa.select(referral.c.id, referral.c.created_at, referral.c.ladder)):
        within = Policy.from_json(json.loads(ladder)).ack_within
        conn.execute(referral.update().where(referral.c.id == rid)
                     .values(ack_deadline_at=created_at + within if created_at else None))


def downgrade() -> None:
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_to_created")
        batch_op.drop_column("ack_deadline_at")
    op.drop_table("ladder_step")
