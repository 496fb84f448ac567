"""agency.beds_updated_at: when the free-bed count was last set (the referral form shows its age)

Revision ID: 0006
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agency") as batch:
        batch.add_column(sa.Column("beds_updated_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agency") as batch:
        batch.drop_column("beds_updated_at")
