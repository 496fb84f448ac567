"""`hub sms ...`: the outbox from the command line.

    hub sms drain --once      hand every due SMS to the gateway, print what happened, exit

Without ``--once`` it drains every ``escalation.tick`` until interrupted (for
debugging; `hub scheduler` is the production ticker). Any number may run at
once: each message is claimed by one drain only.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import click


def _context(config_path: str | None, now: str | None):
    from hub.clock import FixedClock, parse_rfc3339
    from hub.config import load_settings
    from hub.context import HubContext
    from hub.errors import ConfigError
    from hub.notify.gateways import make_gateway

    # `hub --config X sms drain` keeps X in the root command's object.
    root = click.get_current_context().find_root().obj
    if config_path is None and isinstance(root, dict):
        config_path = root.get("config")
    try:
        clock = FixedClock(parse_rfc3339(now)) if now else None
    except ValueError:
        click.echo(f"hub: --now {now!r} is not a time; write it like 2026-11-22T10:00:00Z", err=True)
        sys.exit(2)
    try:
        settings = load_settings(config_path)
        gateway = make_gateway(dataclasses.asdict(settings.sms))
    except ConfigError as exc:
        click.echo(f"hub: {exc.message}", err=True)
        sys.exit(2)
    return HubContext.build(settings, gateway=gateway, clock=clock)


@click.group("sms", help="The SMS outbox.")
def sms() -> None:
    pass


@sms.command("drain")
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, envvar="HUB_CONFIG",
              help="config.toml to use (default ./config.toml).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Messages claimed per batch.")
@click.option("--now", default=None, metavar="ISO", help="Drain as if it were this time (with --once).")
def drain_command(once: bool, config_path: str | None, limit: int, now: str | None) -> None:
    """Hand queued SMS to the gateway (retries wait their backoff; failures raise an alert)."""
    from hub.notify.service import drain_all

    if now and not once:
        click.echo("hub: --now only makes sense with --once", err=True)
        sys.exit(2)
    ctx = _context(config_path, now)
    try:
        while True:
            report = drain_all(ctx.sessions, ctx.gateway, ctx.clock.now(), settings=ctx.settings, limit=limit)
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
