"""the inbox and sent box walk (agency, created_at, id) indexes

Revision ID: 0005
Revises: 0002
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index("ix_referral_inbox", ["to_agency_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_referral_sent", ["from_agency_id", "created_at", "id"], unique=False)
        # Their first column serves what these served.
        batch_op.drop_index("ix_referral_to_agency_id")
        batch_op.drop_index("ix_referral_from_agency_id")


def downgrade() -> None:
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index("ix_referral_from_agency_id", ["from_agency_id"], unique=False)
        batch_op.create_index("ix_referral_to_agency_id", ["to_agency_id"], unique=False)
        batch_op.drop_index("ix_referral_sent")
        batch_op.drop_index("ix_referral_inbox")
