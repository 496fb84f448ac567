"""`hub retention run [--now ISO]`: shred the packets of referrals final for longer than
``[retention] packets_after`` (API.md); metadata, reports and the audit log stay.

Prints one line of JSON: ``{"referrals": N, "packets": M, "cutoff": "..."}``. The scheduler
runs the same every day (hub.scheduler).
"""
from __future__ import annotations

import json

import click

from hub.cli.context import HubGroup, command_context, config_option
from hub.clock import rfc3339
from hub.referrals import retention as retention_service


@click.group("retention", cls=HubGroup)
def retention() -> None:
    """Shredding the packets of referrals long final."""


@retention.command("run")
@click.option("--now", "now_text", metavar="ISO", default=None,
              help="Run as if at this time (RFC 3339 with a zone, e.g. 2028-11-22T10:30:00Z).")
@config_option
def run_command(now_text: str | None) -> None:
    """Shred every packet of a referral final for longer than retention.packets_after."""
    ctx = command_context(now_text=now_text)
    report = retention_service.run(ctx.sessions, ctx.engine, now=ctx.clock.now(),
                                   packets_after=ctx.settings.retention_packets_after, actor="cli")
    click.echo(json.dumps({"referrals": report.referrals, "packets": report.packets,
                           "cutoff": rfc3339(report.cutoff)}))
