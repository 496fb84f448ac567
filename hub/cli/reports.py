"""`hub reports summary`: the figures of GET /api/v1/reports/summary, on the server (API.md).

    hub reports summary [--from D] [--to D] [--province CODE] [--taskforce ID] [--csv]

Run by whoever operates the hub, so its scope is national (all provinces, or the one
chosen). JSON on stdout, or CSV with --csv; each run is an audit entry (actor "cli").
"""
from __future__ import annotations

import json

import click

from hub.cli.context import HubCliError, HubGroup, command_context, config_option
from hub.db import session_scope
from hub.errors import HubError
from hub.reports import service


@click.group("reports", cls=HubGroup)
def reports() -> None:
    """Coordinators' figures: response times, acceptance, escalations, outcomes."""


@reports.command("summary")
@click.option("--from", "start", metavar="D", help="First day (2026-11-01: from midnight in [hub] timezone) or "
                                                   "time (RFC 3339); default 30 days before --to.")
@click.option("--to", "end", metavar="D", help="Day (its midnight in [hub] timezone) or time the window ends "
                                               "(exclusive); default now.")
@click.option("--province", metavar="CODE", help="Only referrals received in this province (e.g. KH-12).")
@click.option("--taskforce", metavar="ID", help="Only the referrals of this national task force (config.toml).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per receiving agency, instead of JSON.")
@config_option
def summary_command(start: str | None, end: str | None, province: str | None, taskforce: str | None,
                    as_csv: bool) -> None:
    """Print the summary of referrals created in [--from, --to)."""
    ctx = command_context()
    now = ctx.clock.now()
    try:
        scope = service.national_scope(province, taskforce=taskforce, settings=ctx.settings)
        win = service.window(start, end, now, tz=ctx.settings.timezone)
    except HubError as exc:  # name the option, not the API's query parameter
        raise HubCliError(exc.message.replace("'from'", "--from").replace("'to'", "--to")
                          .replace("'taskforce'", "--taskforce"), 2) from None
    with session_scope(ctx.sessions) as session:
        report = service.summary(session, scope, win, now, settings=ctx.settings, actor="cli",
                                 export="csv" if as_csv else None)
    if as_csv:
        click.echo(service.to_csv(report), nl=False)
    else:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
