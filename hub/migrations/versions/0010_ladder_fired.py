"""referral.ladder_fired: the ladder steps fired, as bits on the referral row (the reports' one scan)

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Frozen here as hub.escalation.models.ladder_bit lays them out: bit clock_index * 21 + step.
STEPS_PER_CLOCK = 21
CLOCKS = ("ack", "decide", "arrive")


BACKFILL = """
    UPDATE referral SET ladder_fired = COALESCE((
        SELECT SUM(CAST(1 AS BIGINT) << (CASE ls.clock {offset} END + ls.step))
        FROM ladder_step ls
        WHERE ls.referral_id = referral.id AND ls.clock IN ({clocks})
          AND ls.step >= 0 AND ls.step < {steps}), 0)
"""


def upgrade() -> None:
    with op.batch_alter_table("referral") as batch:
        batch.add_column(sa.Column("ladder_fired", sa.BigInteger(), server_default="0", nullable=True))
    # Each (referral, clock, step) of the ladder's record is one row, so the sum of their distinct bits is
    # their bitwise OR (SQLite has no bit_or).
    offset = " ".join(f"WHEN '{c}' THEN {i * STEPS_PER_CLOCK}" for i, c in enumerate(CLOCKS))
    clocks = ", ".join(f"'{c}'" for c in CLOCKS)
    op.execute(BACKFILL.format(offset=offset, clocks=clocks, steps=STEPS_PER_CLOCK))  # nosec B608: only this file's constants


def downgrade() -> None:
    with op.batch_alter_table("referral") as batch:
        batch.drop_column("ladder_fired")
