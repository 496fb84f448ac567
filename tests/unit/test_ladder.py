"""Ladder timing (docs/design-notes.md "Ladder timing"): when each step of each clock is due. Pure, no DB."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from hub.config import DEFAULT_POLICIES, _policy
from hub.escalation.service import deadline, frozen_policy, next_firing, start_clock, step_due_at

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)
URGENT = _policy("urgent", DEFAULT_POLICIES["urgent"])
NORMAL = _policy("normal", DEFAULT_POLICIES["normal"])
M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)


@pytest.mark.parametrize("step,after", [(0, 0 * M), (1, 30 * M), (2, 60 * M), (3, 120 * M)])
def test_ack_clock_of_the_urgent_policy_fires_at_the_written_offsets(step, after):
    assert step_due_at(URGENT, "ack", T0, step) == T0 + after


@pytest.mark.parametrize("step,after", [(0, 0 * H), (1, 4 * H), (2, 8 * H), (3, 24 * H)])
def test_ack_clock_of_the_normal_policy_fires_at_the_written_offsets(step, after):
    assert step_due_at(NORMAL, "ack", T0, step) == T0 + after


@pytest.mark.parametrize("clock,within", [("decide", 2 * H), ("arrive", 24 * H)])
def test_later_clocks_escalate_only_when_they_run_out(clock, within):
    assert step_due_at(URGENT, clock, T0, 0) == T0
    assert step_due_at(URGENT, clock, T0, 1) == T0 + within == deadline(URGENT, clock, T0)
    assert step_due_at(URGENT, clock, T0, 2) == T0 + within + 30 * M
    assert step_due_at(URGENT, clock, T0, 3) == T0 + within + 90 * M


def test_last_step_repeats_every_repeat_every():
    assert step_due_at(URGENT, "ack", T0, 3, repeat=1) == T0 + 3 * H
    assert step_due_at(URGENT, "ack", T0, 3, repeat=5) == T0 + 7 * H
    assert step_due_at(NORMAL, "ack", T0, 3, repeat=2) == T0 + 24 * H + 8 * H


def test_next_firing_climbs_the_ladder_then_repeats_the_last_step():
    seq, state = [], (-1, 0)
    for _ in range(6):
        state = next_firing(*state, last=3)
        seq.append(state)
    assert seq == [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]


def test_start_clock_schedules_step_zero_and_the_deadline():
    referral = SimpleNamespace(ladder=URGENT.to_json(), step=2, repeat=3, overdue_alerted_at=T0)
    start_clock(referral, "decide", T0 + H)
    assert (referral.clock, referral.step, referral.repeat) == ("decide", -1, 0)
    assert referral.next_step_at == T0 + H
    assert referral.deadline_at == T0 + 3 * H
    assert referral.overdue_alerted_at is None


def test_stopping_the_clocks_leaves_nothing_due():
    referral = SimpleNamespace(ladder=URGENT.to_json(), step=1, repeat=0, overdue_alerted_at=None)
    start_clock(referral, None, T0)
    assert referral.clock is None and referral.next_step_at is None and referral.deadline_at is None


def test_frozen_ladder_is_what_the_referral_keeps_not_the_current_config():
    frozen = URGENT.to_json()
    frozen["ladder"][1]["after"] = "PT45M"
    frozen["ack_within"] = "PT45M"
    policy = frozen_policy(SimpleNamespace(ladder=frozen))
    assert step_due_at(policy, "ack", T0, 1) == T0 + 45 * M
    assert step_due_at(frozen_policy(SimpleNamespace(ladder=URGENT.to_json())), "ack", T0, 1) == T0 + 30 * M
