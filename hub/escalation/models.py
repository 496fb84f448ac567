"""The ladder's record: which step of which clock fired on each referral, and when.

The referral row holds only the running clock and the step it has reached; the
reports need every step that ever fired (API.md ``steps_fired``), silent steps and
steps that reached nobody included. One row per (referral, clock, step), written
behind the same version fence as the ladder state (``apply``): repeats of the last
step are the same row, fired once.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base, UTCDateTime


class LadderStep(Base):
    __tablename__ = "ladder_step"

    referral_id: Mapped[str] = mapped_column(sa.ForeignKey("referral.id"), primary_key=True)
    clock: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    step: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    fired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
