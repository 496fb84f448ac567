"""agency.beds_updated_at (the referral form shows the bed count's age); indexes for the web's boxes

Revision ID: 0006
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agency") as batch:
        batch.add_column(sa.Column("beds_updated_at", UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_referral_inbox_order", "referral", ["to_agency_id", "closed_at"])
    op.create_index("ix_referral_sent_order", "referral", ["from_agency_id", "closed_at"])


def downgrade() -> None:
    op.drop_index("ix_referral_sent_order", table_name="referral")
    op.drop_index("ix_referral_inbox_order", table_name="referral")
    with op.batch_alter_table("agency") as batch:
        batch.drop_column("beds_updated_at")
