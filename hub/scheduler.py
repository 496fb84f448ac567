"""APScheduler 3.x as a ticker only: the escalation sweep and the outbox drain, two jobs on their own threads.

State lives in tables (ARCHITECTURE.md): the jobs keep nothing in memory and
claim rows with ``FOR UPDATE SKIP LOCKED``, so any number of `hub scheduler`
processes may run and a restart loses nothing. Nothing here runs on import, and
``create_app`` never builds a scheduler: `hub scheduler` runs one blocking, and
`hub serve` one in the background (:func:`start_background`).

- The sweep runs every ``escalation.tick`` on an executor of its own. It claims
  due referrals (row locks, released by the database if the process dies),
  queues their texts and wakes the drain; it never sends, so a slow or hanging
  SMS gateway cannot delay a ladder step.
- The drain runs every tick, and at once when the sweep has queued texts, on
  another executor; it sends up to ``[sms] concurrency`` texts at once on its
  own sending threads, each bounded by ``[sms] send_timeout``, and claims a
  message only when a sending thread is free (hub.notify.service).
- ``shutdown()`` first tells both jobs to stop: the sweep ends after its
  current batch, the drain claims nothing more and records what it is
  sending; then the scheduler waits for them.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor as SendingThreads
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from hub.audit import sequencer as audit_sequencer
from hub.errors import log_failure
from hub.escalation.service import sweep
from hub.notify.service import drain, forget_webhooks_seen
from hub.referrals import retention

log = logging.getLogger("hub.scheduler")

SWEEP_JOB = "escalation-sweep"
DRAIN_JOB = "outbox-drain"
AUDIT_JOB = "audit-sequencer"
RETENTION_JOB = "retention"
RETENTION_EVERY = dt.timedelta(days=1)


class Drainer:
    """The drain job of one scheduler: at most one drain at a time, woken early by the sweep.

    ``wake()`` makes a running drain go round once more when it is done (the texts
    just queued may have missed its last claim), or asks the scheduler to start one
    now. The drain job may be started while one runs (``max_instances=2``): the
    second only hands its turn to the first, so no wake-up is ever lost between
    a drain's last claim and its end.
    """

    def __init__(self, ctx, stop: threading.Event):
        self.ctx, self.stop = ctx, stop
        self.concurrency = ctx.settings.sms.concurrency
        self.threads = SendingThreads(self.concurrency, thread_name_prefix="hub-sms-send")
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self.scheduler = None

    def wake(self) -> None:
        with self._lock:
            self._again = True
            if self._running:
                return
        if self.scheduler is not None and not self.stop.is_set():
            try:
                self.scheduler.modify_job(DRAIN_JOB, next_run_time=dt.datetime.now(dt.timezone.utc))
            except Exception:  # the scheduler is shutting down: the next drain finds the texts
                log.debug("drain wake-up not scheduled", exc_info=True)

    def __call__(self) -> None:
        with self._lock:
            if self._running:  # a drain is under way: it goes round once more
                self._again = True
                return
            self._running = True
        try:
            while True:
                with self._lock:
                    self._again = False
                self.run_once()
                with self._lock:
                    if not self._again or self.stop.is_set():
                        self._running = False
                        return
        except BaseException:
            with self._lock:
                self._running = False
            raise

    def run_once(self) -> Any:
        """One drain, until nothing is due (errors are logged; the next tick tries again)."""
        try:
            return drain(self.ctx.sessions, self.ctx.gateway, self.ctx.clock, settings=self.ctx.settings,
                         concurrency=self.concurrency, stop=self.stop, executor=self.threads,
                         on_failed=self.ctx.on_delivery_failed)
        except Exception:
            log_failure(log, "outbox drain failed; the next tick tries again")
            return None

    def close(self) -> None:
        self.threads.shutdown(wait=True)


def run_sweep(ctx, stop: threading.Event | None = None) -> Any:
    """One tick of the escalation sweep (errors are logged; the next tick tries again)."""
    try:
        return sweep(ctx.sessions, ctx.clock.now(), settings=ctx.settings, stop=stop)
    except Exception:
        log_failure(log, "escalation sweep failed; the next tick tries again")
        return None


class _StopFirst:
    """``shutdown()`` tells the jobs to stop before it waits for them, then closes the sending threads."""

    hub_stop: threading.Event
    hub_drainer: Drainer

    def shutdown(self, wait: bool = True) -> None:
        self.hub_stop.set()
        super().shutdown(wait=wait)  # type: ignore[misc]
        if wait:
            self.hub_drainer.close()


class HubBlockingScheduler(_StopFirst, BlockingScheduler):
    pass


class HubBackgroundScheduler(_StopFirst, BackgroundScheduler):
    pass


def run_audit_sequencer(ctx) -> Any:
    """Sequence new audit entries and sign a checkpoint if the tree grew (PROTOCOL.md section 6).

    One sequencer at a time across processes (a database lock); a run that finds the lock
    taken does nothing.
    """
    try:
        return audit_sequencer.tick(ctx.sessions, ctx.clock.now(), settings=ctx.settings, block=False)
    except Exception:
        log_failure(log, "audit sequencer failed; the next run tries again")
        return None


def run_retention(ctx) -> Any:
    """Shred the packets of referrals final for longer than ``[retention] packets_after``, and forget
    the webhooks acted on more than ``[retention] webhooks_seen_for`` ago (daily).

    Safe with several schedulers: each run shreds only packets that still hold bytes, in one
    transaction, and a second run at once finds nothing left to do."""
    now = ctx.clock.now()
    try:
        with ctx.sessions() as session, session.begin():
            forgotten = forget_webhooks_seen(session, before=now - ctx.settings.retention_webhooks_seen_for)
        if forgotten:
            log.info("retention forgot webhooks_seen=%d", forgotten)
    except Exception:
        log_failure(log, "forgetting old webhook keys failed; tomorrow's run tries again")
    try:
        report = retention.run(ctx.sessions, ctx.engine, now=now, packets_after=ctx.settings.retention_packets_after)
        if report.packets:
            log.info("retention shredded packets=%d referrals=%d", report.packets, report.referrals)
        return report
    except Exception:
        log_failure(log, "retention run failed; tomorrow's run tries again")
        return None


def build_scheduler(ctx, *, blocking: bool):
    """A scheduler with the sweep and drain jobs, every ``settings.tick``, not started.

    Each job has its own executor, so neither waits for the other; ``coalesce``
    folds ticks missed while a job ran into one run.
    """
    stop = threading.Event()
    drainer = Drainer(ctx, stop)
    cls = HubBlockingScheduler if blocking else HubBackgroundScheduler
    seconds = max(ctx.settings.tick.total_seconds(), 0.1)
    scheduler = cls(
        executors={"sweep": ThreadPoolExecutor(1), "drain": ThreadPoolExecutor(2), "audit": ThreadPoolExecutor(1),
                   "retention": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "misfire_grace_time": max(int(seconds * 2), 1)},
        timezone="UTC",
    )
    scheduler.hub_stop, scheduler.hub_drainer = stop, drainer
    drainer.scheduler = scheduler

    def sweep_job() -> None:
        report = run_sweep(ctx, stop)
        if report is not None and report.messages:
            drainer.wake()  # the drain job sends them now, on its own threads

    first = dt.datetime.now(dt.timezone.utc)  # the first tick at once, not one interval after start
    scheduler.add_job(sweep_job, "interval", id=SWEEP_JOB, name=SWEEP_JOB, seconds=seconds, executor="sweep",
                      max_instances=1, next_run_time=first)
    scheduler.add_job(drainer, "interval", id=DRAIN_JOB, name=DRAIN_JOB, seconds=seconds, executor="drain",
                      max_instances=2, next_run_time=first)
    scheduler.add_job(run_audit_sequencer, "interval", args=[ctx], id=AUDIT_JOB, name=AUDIT_JOB, executor="audit",
                      seconds=max(ctx.settings.checkpoint_every.total_seconds(), 1.0), max_instances=1,
                      next_run_time=first)
    # Daily, the first run a minute after start (not at once: a restart loop must not hammer the database).
    scheduler.add_job(run_retention, "interval", args=[ctx], id=RETENTION_JOB, name=RETENTION_JOB,
                      executor="retention", seconds=RETENTION_EVERY.total_seconds(), max_instances=1,
                      next_run_time=first + dt.timedelta(minutes=1))
    return scheduler


def start_background(ctx):
    """Start a BackgroundScheduler for `hub serve` (one per process; the caller shuts it down)."""
    scheduler = build_scheduler(ctx, blocking=False)
    scheduler.start()
    log.info("in-process scheduler started: sweep and drain every %s s", ctx.settings.tick.total_seconds())
    return scheduler
