"""APScheduler 3.x as a ticker only: every ``escalation.tick`` it runs the escalation sweep and the outbox drain.

State lives in tables (ARCHITECTURE.md): the jobs keep nothing in memory and
claim rows with ``FOR UPDATE SKIP LOCKED``, so any number of `hub scheduler`
processes may run and a restart loses nothing. Nothing here runs on import, and
``create_app`` never builds a scheduler: `hub scheduler` runs one blocking, and
`hub serve` one in the background (:func:`start_background`).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from hub.errors import log_failure
from hub.escalation.service import sweep
from hub.notify.service import drain_all

log = logging.getLogger("hub.scheduler")

SWEEP_JOB = "escalation-sweep"
DRAIN_JOB = "outbox-drain"


def run_sweep(ctx) -> Any:
    """One tick of the escalation sweep (errors are logged; the next tick tries again)."""
    try:
        return sweep(ctx.sessions, ctx.clock.now(), settings=ctx.settings)
    except Exception:
        log_failure(log, "escalation sweep failed; the next tick tries again")
        return None


def run_drain(ctx) -> Any:
    """One tick of the outbox drain, until nothing is due."""
    try:
        return drain_all(ctx.sessions, ctx.gateway, ctx.clock.now(), settings=ctx.settings,
                         on_failed=ctx.on_delivery_failed)
    except Exception:
        log_failure(log, "outbox drain failed; the next tick tries again")
        return None


def build_scheduler(ctx, *, blocking: bool):
    """A Blocking- or BackgroundScheduler with the two interval jobs, every ``settings.tick``, not started.

    ``coalesce`` folds ticks missed while a job ran into one run, and
    ``max_instances=1`` keeps one run of each job at a time in this process.
    """
    cls = BlockingScheduler if blocking else BackgroundScheduler
    seconds = max(ctx.settings.tick.total_seconds(), 0.1)
    scheduler = cls(
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(int(seconds * 2), 1)},
        timezone="UTC",
    )
    def sweep_then_drain() -> None:
        report = run_sweep(ctx)
        if report is not None and (report.messages or report.alerts):
            # Texts were queued: drain now, in this thread, rather than at the drain job's next
            # tick (which may be running at this very moment and so skip a wake-up), so a step's
            # text reaches the gateway within one tick of its due moment. Drains claim rows with
            # SKIP LOCKED, so this one and the drain job never take the same message.
            run_drain(ctx)

    scheduler.add_job(sweep_then_drain, "interval", id=SWEEP_JOB, name=SWEEP_JOB, seconds=seconds,
                      coalesce=True, max_instances=1, next_run_time=_first_run())
    scheduler.add_job(run_drain, "interval", args=[ctx], id=DRAIN_JOB, name=DRAIN_JOB, seconds=seconds,
                      coalesce=True, max_instances=1, next_run_time=_first_run())
    return scheduler


def _first_run():
    return dt.datetime.now(dt.timezone.utc)  # the first tick at once, not one interval after start


def start_background(ctx):
    """Start a BackgroundScheduler for `hub serve` (one per process; the caller shuts it down)."""
    scheduler = build_scheduler(ctx, blocking=False)
    scheduler.start()
    log.info("in-process scheduler started: sweep and drain every %s s", ctx.settings.tick.total_seconds())
    return scheduler
