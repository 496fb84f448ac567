"""`hub escalate` and `hub scheduler`, and the in-process scheduler of `hub serve`.

    hub escalate --once [--now 2026-11-22T10:30:00Z]   one sweep, as if at --now; one line of JSON
    hub scheduler                                      sweep + drain every escalation.tick until SIGTERM

Any number of `hub scheduler` processes may run at once (ARCHITECTURE.md,
"State lives in tables").
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click

from hub.cli.context import command_context, config_option
from hub.clock import rfc3339
from hub.escalation.service import sweep
from hub.scheduler import build_scheduler, start_background

log = logging.getLogger("hub.scheduler")


@click.command("escalate")
@click.option("--once", is_flag=True, required=True, help="Run one sweep and exit (the only mode).")
@click.option("--now", "now_text", metavar="ISO",
              help="Sweep as if at this moment, e.g. 2026-11-22T10:30:00Z (default: the system clock).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Referrals claimed per transaction.")
@config_option
def escalate_command(once: bool, now_text: str | None, limit: int) -> None:
    """Run one escalation sweep and print its report as one line of JSON."""
    ctx = command_context(now_text=now_text)
    try:
        now = ctx.clock.now()
        report = sweep(ctx.sessions, now, settings=ctx.settings, limit=limit)
    except Exception as exc:
        click.echo(f"hub: the sweep failed ({type(exc).__name__}); check the database and the log", err=True)
        sys.exit(1)
    finally:
        ctx.engine.dispose()
    click.echo(json.dumps({"now": rfc3339(now), **report.to_json()}, sort_keys=True))
    if report.errors:
        sys.exit(1)


@click.command("scheduler")
@config_option
def scheduler_command() -> None:
    """Run the escalation sweep and the outbox drain every escalation.tick until SIGTERM or Ctrl-C.

    On SIGTERM or Ctrl-C the sweep ends after its current batch and the drain claims
    nothing more and records the texts it is sending (each within [sms] send_timeout),
    so a clean stop leaves no message claimed.
    """
    ctx = command_context()
    scheduler = build_scheduler(ctx, blocking=True)
    stopping: list[threading.Thread] = []

    def _stop(signum, _frame):
        if stopping:
            return
        log.info("scheduler stopping on signal %d", signum)
        # Not in the signal handler: shutdown() waits for the sweep's batch and the sends in flight.
        stopping.append(threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True))
        stopping[0].start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"hub scheduler: sweep and drain every {ctx.settings.tick.total_seconds():g} s "
               f"(SIGTERM or Ctrl-C to stop)", err=True)
    try:
        scheduler.start()
        for thread in stopping:
            thread.join()
    finally:
        ctx.engine.dispose()
    click.echo("hub scheduler: stopped", err=True)


def start_embedded_scheduler(app_or_ctx):
    """One in-process scheduler for `hub serve` (never for gunicorn workers); returns it, started.

    Takes the Flask app (``app.extensions["hub"]``) or a HubContext. The caller
    shuts it down (``scheduler.shutdown()``) when the server stops.
    """

    ctx = app_or_ctx.extensions["hub"] if hasattr(app_or_ctx, "extensions") else app_or_ctx
    return start_background(ctx)
