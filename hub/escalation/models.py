"""The ladder's record: which step of which clock fired on each referral, and when.

The referral row holds only the running clock and the step it has reached; the
reports need every step that ever fired (API.md ``steps_fired``), silent steps and
steps that reached nobody included. One row per (referral, clock, step), written
behind the same version fence as the ladder state (``apply``): repeats of the last
step are the same row, fired once.

The same facts are also kept on the referral row, as bits of ``referral.ladder_fired``
(bit ``clock index * STEPS_PER_CLOCK + step``, written by the fenced UPDATE itself), so
that the reports count the steps fired in the one scan of a window's referrals
instead of probing this table once per referral (docs/design-notes.md "Reports").
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime
from hub.config import MAX_LADDER_STEPS
from hub.vocabulary import CLOCKS

# Bits of referral.ladder_fired per clock: 3 clocks x 21 steps fit a signed 64-bit integer. hub.config
# refuses a longer ladder.
STEPS_PER_CLOCK = MAX_LADDER_STEPS


def ladder_bit(clock: str, step: int) -> int:
    """The bit of referral.ladder_fired that says ``step`` of ``clock`` fired."""
    if not 0 <= step < STEPS_PER_CLOCK:
        raise ValueError(f"ladder step {step} is beyond the {STEPS_PER_CLOCK} a clock may have")
    return 1 << (CLOCKS.index(clock) * STEPS_PER_CLOCK + step)


def fired_bits(clock: str | None, steps) -> int:
    """The bits of the steps fired on one clock (``steps``: step indexes)."""
    bits = 0
    if clock is not None:
        for step in steps:
            bits |= ladder_bit(clock, step)
    return bits


class LadderStep(Base):
    __tablename__ = "ladder_step"

    referral_id: Mapped[str] = mapped_column(sa.ForeignKey("referral.id"), primary_key=True)
    clock: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    step: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    fired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
