"""Sign-in security: TOTP columns (sealed secret), session stages and idle limit, recovery codes,
known devices, per-address sign-in throttle

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.alter_column("totp_secret", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=True)
        batch.add_column(sa.Column("totp_pending", sa.String(255), nullable=True))
        batch.add_column(sa.Column("totp_last_counter", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("user_session") as batch:
        batch.add_column(sa.Column("stage", sa.String(8), nullable=False, server_default="done"))
        batch.add_column(sa.Column("idle_seconds", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("code_failures", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "recovery_code",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_recovery_code_user_id", "recovery_code", ["user_id"])
    op.create_table(
        "known_device",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), primary_key=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_index("ix_known_device_user_id", "known_device", ["user_id"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("not_before", UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_index("ix_known_device_user_id", table_name="known_device")
    op.drop_table("known_device")
    op.drop_index("ix_recovery_code_user_id", table_name="recovery_code")
    op.drop_table("recovery_code")
    with op.batch_alter_table("user_session") as batch:
        batch.drop_column("code_failures")
        batch.drop_column("idle_seconds")
        batch.drop_column("stage")
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("totp_last_counter")
        batch.drop_column("totp_pending")
        batch.alter_column("totp_secret", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=True)
