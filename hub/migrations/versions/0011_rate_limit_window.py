"""rate_limit_window: rate-limit counts in the database, for rate_limit_storage = "database"

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_window",
        sa.Column("key_digest", sa.LargeBinary(32), primary_key=True),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
    )
    op.create_index("ix_rate_limit_window_expires_ms", "rate_limit_window", ["expires_ms"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_window_expires_ms", table_name="rate_limit_window")
    op.drop_table("rate_limit_window")
