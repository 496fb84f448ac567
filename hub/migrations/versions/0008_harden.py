"""webhook_seen: the Twilio webhooks acted on, so that a replay changes nothing

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_seen",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("seen_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_seen_seen_at", "webhook_seen", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_seen_seen_at", table_name="webhook_seen")
    op.drop_table("webhook_seen")
