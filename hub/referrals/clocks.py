"""The one clock each open referral runs, and when its ladder steps fall due (PROTOCOL.md section 4).

Pure arithmetic on the referral row and its frozen policy; the escalation engine
(``hub.escalation``) reads these fields to fire the steps.
"""
from __future__ import annotations

import datetime as dt

from hub.config import Policy
from hub.vocabulary import CLOCK_FOR_STATE

__all__ = ["CLOCK_FOR_STATE", "deadline", "next_firing", "start_clock", "step_due_at"]


def deadline(policy: Policy, clock: str, started_at: dt.datetime) -> dt.datetime:
    within = {"ack": policy.ack_within, "decide": policy.decide_within, "arrive": policy.arrive_within}[clock]
    return started_at + within


def step_due_at(policy: Policy, clock: str, started_at: dt.datetime, step: int, repeat: int = 0) -> dt.datetime:
    """When ladder step ``step`` (0-based) of a clock is due.

    Step 0 fires when the clock starts: it tells whoever must act now. Every later
    step k fires at the clock's deadline plus (after[k] - after[1]): the first
    escalation when the clock runs out, the rest spaced as the ladder says. For
    the ack clock of the shipped policies (after[1] == ack_within) this is exactly
    the ``after`` written in config.toml. After the last step the last target is
    notified again every ``repeat_every`` until the clock stops.
    """
    ladder = policy.ladder
    if step == 0:
        return started_at + ladder[0].after
    first = ladder[1].after if len(ladder) > 1 else ladder[0].after
    due = deadline(policy, clock, started_at) + (ladder[min(step, len(ladder) - 1)].after - first)
    return due + policy.repeat_every * repeat


def next_firing(step: int, repeat: int, last: int) -> tuple[int, int]:
    """The (step, repeat) that comes after ``(step, repeat)`` on a ladder whose last index is ``last``."""
    return (step + 1, 0) if step < last else (last, repeat + 1)


def start_clock(referral, clock: str | None, now: dt.datetime, policy: Policy | None = None) -> None:
    """Start ``clock`` on the referral (or stop all clocks with None); the sweep does the rest.

    ``policy``: the one frozen into ``referral.ladder``, when the caller has it already.
    """
    referral.clock = clock
    referral.repeat = 0
    referral.step = -1
    referral.overdue_alerted_at = None
    referral.step_failed_at = None
    if clock is None:
        referral.clock_started_at = None
        referral.deadline_at = None
        referral.next_step_at = None
        return
    policy = policy or Policy.from_json(referral.ladder)
    referral.clock_started_at = now
    referral.deadline_at = deadline(policy, clock, now)
    if clock == "ack":  # kept after the clock stops: the reports' late_share
        referral.ack_deadline_at = referral.deadline_at
    referral.next_step_at = step_due_at(policy, clock, now, 0)
