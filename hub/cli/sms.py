"""`hub sms ...`: the outbox from the command line.

    hub sms drain --once      hand every due SMS to the gateway, print what happened, exit

Without ``--once`` it drains every ``escalation.tick`` until interrupted (for
debugging; `hub scheduler` is the production ticker). Any number may run at
once: each message is claimed by one drain only.
"""
from __future__ import annotations

import sys
import time

import click

from hub.cli.context import HubGroup, command_context, config_option
from hub.notify.service import drain


@click.group("sms", cls=HubGroup, help="The SMS outbox.")
def sms() -> None:
    pass


@sms.command("drain")
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
@config_option
@click.option("--now", default=None, metavar="ISO", help="Drain as if it were this time (with --once).")
def drain_command(once: bool, now: str | None) -> None:
    """Hand queued SMS to the gateway, [sms] concurrency at a time (retries wait their backoff; failures raise an alert)."""
    if now and not once:
        click.echo("hub: --now only makes sense with --once", err=True)
        sys.exit(2)
    ctx = command_context(now_text=now)
    try:
        while True:
            report = drain(ctx.sessions, ctx.gateway, ctx.clock, settings=ctx.settings,
                           on_failed=ctx.on_delivery_failed)
            if once or report:
                click.echo(f"sms drain: sent {report.sent}, retrying later {report.retried}, "
                           f"failed {report.failed}, reclaimed {report.reclaimed}")
            if once:
                return
            time.sleep(ctx.settings.tick.total_seconds())
    except KeyboardInterrupt:
        return
    finally:
        ctx.engine.dispose()
